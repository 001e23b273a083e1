// Cosmos DB account
//
// A Cosmos DB (NoSQL API) account with one SQL database, session consistency by default and
// automatic failover. Outputs the account's id, name and document endpoint.

@description('Globally unique account name: 3-44 lowercase letters, digits and hyphens.')
@minLength(3)
@maxLength(44)
param accountName string

@description('Azure region of the account.')
param location string = resourceGroup().location

@description('Name of the SQL database created in the account.')
param databaseName string = 'appdb'

@description('Default consistency level.')
@allowed([
  'Eventual'
  'ConsistentPrefix'
  'Session'
  'BoundedStaleness'
  'Strong'
])
param consistencyLevel string = 'Session'

@description('Serverless capacity instead of provisioned throughput.')
param serverless bool = true

@description('Tags applied to the account.')
param tags object = {}

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: accountName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: consistencyLevel
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    enableAutomaticFailover: true
    minimalTlsVersion: 'Tls12'
    capabilities: serverless ? [
      {
        name: 'EnableServerless'
      }
    ] : []
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

output accountId string = account.id
output accountName string = account.name
output documentEndpoint string = account.properties.documentEndpoint
output databaseName string = database.name
