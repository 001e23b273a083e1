// Diagnostic settings
//
// A storage account whose blob service sends its read, write and delete logs and transaction
// metrics to a new Log Analytics workspace. Outputs the workspace's and the diagnostic
// setting's ids and the storage account's name.

@description('Globally unique name of the monitored storage account: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Name of the Log Analytics workspace receiving the logs.')
@minLength(4)
@maxLength(63)
param workspaceName string

@description('Azure region of the resources.')
param location string = resourceGroup().location

@description('Days the workspace keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Name of the diagnostic setting.')
param settingName string = 'send-to-log-analytics'

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: allTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: allTags
  sku: {
    name: 'Standard_LRS'
  }
  kind: 'StorageV2'
  properties: {
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: blobService
  name: settingName
  properties: {
    workspaceId: workspace.id
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

output workspaceId string = workspace.id
output diagnosticSettingId string = diagnostics.id
output storageAccountName string = storageAccount.name
