// Log Analytics workspace
//
// A Log Analytics workspace (pay-as-you-go) with a retention period and an optional daily cap.
// Outputs its id, name and customer id.

@description('Name of the workspace.')
@minLength(4)
@maxLength(63)
param workspaceName string

@description('Azure region of the workspace.')
param location string = resourceGroup().location

@description('Days data is kept.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Daily ingestion cap in GB (-1: no cap).')
@minValue(-1)
param dailyQuotaGb int = -1

@description('Tags applied to the workspace.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output customerId string = workspace.properties.customerId
