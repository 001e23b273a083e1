// Azure SQL database
//
// A logical SQL server (TLS 1.2, Azure services allowed through the firewall) and one database.
// Outputs the server's FQDN and the database's id and name.

@description('Globally unique SQL server name: lowercase letters, digits and hyphens.')
@minLength(1)
@maxLength(63)
param serverName string

@description('Name of the database.')
@minLength(1)
@maxLength(128)
param databaseName string

@description('Azure region of the server.')
param location string = resourceGroup().location

@description('Administrator login of the server.')
@minLength(1)
param administratorLogin string

@description('Administrator password of the server.')
@secure()
@minLength(12)
param administratorPassword string

@description('Database SKU.')
@allowed([
  'Basic'
  'S0'
  'S1'
  'GP_S_Gen5_1'
  'GP_Gen5_2'
])
param skuName string = 'S0'

@description('Maximum database size in GB.')
@minValue(1)
@maxValue(1024)
param maxSizeGb int = 2

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })

resource sqlServer 'Microsoft.Sql/servers@2023-08-01-preview' = {
  name: serverName
  location: location
  tags: allTags
  properties: {
    administratorLogin: administratorLogin
    administratorLoginPassword: administratorPassword
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01-preview' = {
  parent: sqlServer
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01-preview' = {
  parent: sqlServer
  name: databaseName
  location: location
  tags: allTags
  sku: {
    name: skuName
  }
  properties: {
    maxSizeBytes: maxSizeGb * 1024 * 1024 * 1024
    zoneRedundant: false
  }
}

output serverFqdn string = sqlServer.properties.fullyQualifiedDomainName
output databaseId string = database.id
output databaseName string = database.name
