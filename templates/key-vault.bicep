// Key Vault
//
// A Key Vault using Azure RBAC for access, with soft delete and purge protection, reachable from
// all networks unless restricted. Outputs its id, name and URI.

@description('Globally unique vault name: 3-24 letters, digits and hyphens.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Azure region of the vault.')
param location string = resourceGroup().location

@description('Pricing tier.')
@allowed([
  'standard'
  'premium'
])
param skuName string = 'standard'

@description('Days a deleted vault or object can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Deny access from public networks (private endpoints only).')
param disablePublicAccess bool = false

@description('Tags applied to the vault.')
param tags object = {}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    publicNetworkAccess: disablePublicAccess ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: disablePublicAccess ? 'Deny' : 'Allow'
    }
  }
}

output keyVaultId string = keyVault.id
output keyVaultName string = keyVault.name
output keyVaultUri string = keyVault.properties.vaultUri
