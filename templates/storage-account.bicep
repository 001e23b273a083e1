// Storage account
//
// A StorageV2 account with HTTPS only, TLS 1.2, no public blob access and soft delete for blobs.
// Outputs its id, name and primary endpoints.

@description('Globally unique account name: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Azure region of the account.')
param location string = resourceGroup().location

@description('Replication and performance tier.')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_ZRS'
  'Premium_LRS'
])
param skuName string = 'Standard_LRS'

@description('Default access tier for blobs.')
@allowed([
  'Hot'
  'Cool'
])
param accessTier string = 'Hot'

@description('Days deleted blobs are kept (0 disables soft delete).')
@minValue(0)
@maxValue(365)
param softDeleteDays int = 7

@description('Tags applied to the account.')
param tags object = {}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  sku: {
    name: skuName
  }
  kind: 'StorageV2'
  properties: {
    accessTier: accessTier
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: softDeleteDays > 0
      days: softDeleteDays > 0 ? softDeleteDays : null
    }
  }
}

output storageAccountId string = storageAccount.id
output storageAccountName string = storageAccount.name
output primaryBlobEndpoint string = storageAccount.properties.primaryEndpoints.blob
output primaryWebEndpoint string = storageAccount.properties.primaryEndpoints.web
