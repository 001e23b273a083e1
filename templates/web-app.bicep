// Web app
//
// A Linux App Service plan and a web app on it, HTTPS only, with a system-assigned identity.
// Outputs the app's id, name, default host name and principal id.

@description('Globally unique app name (the host is <name>.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param webAppName string

@description('Azure region of the app.')
param location string = resourceGroup().location

@description('App Service plan SKU.')
@allowed([
  'F1'
  'B1'
  'B2'
  'S1'
  'P1v3'
  'P2v3'
])
param skuName string = 'B1'

@description('Runtime stack, as App Service names it.')
param linuxFxVersion string = 'NODE|20-lts'

@description('Application settings (environment variables) as a list of {name, value} objects.')
param appSettings array = []

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${webAppName}-plan'
  location: location
  tags: allTags
  kind: 'linux'
  sku: {
    name: skuName
  }
  properties: {
    reserved: true
  }
}

resource webApp 'Microsoft.Web/sites@2023-12-01' = {
  name: webAppName
  location: location
  tags: allTags
  kind: 'app,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: linuxFxVersion
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      alwaysOn: skuName != 'F1'
      appSettings: appSettings
    }
  }
}

output webAppId string = webApp.id
output webAppName string = webApp.name
output defaultHostName string = webApp.properties.defaultHostName
output principalId string = webApp.identity.principalId
