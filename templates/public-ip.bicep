// Public IP address
//
// A static Standard public IPv4 address with an optional DNS label. Outputs its id, the address
// and the fully qualified domain name.

@description('Name of the public IP resource.')
@minLength(1)
@maxLength(80)
param publicIpName string

@description('Azure region of the address.')
param location string = resourceGroup().location

@description('DNS label (the FQDN is <label>.<region>.cloudapp.azure.com); empty for none.')
@maxLength(63)
param dnsLabel string = ''

@description('Availability zones of the address; empty for none.')
param zones array = []

@description('Tags applied to the address.')
param tags object = {}

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-01-01' = {
  name: publicIpName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  zones: empty(zones) ? null : zones
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
    dnsSettings: empty(dnsLabel) ? null : {
      domainNameLabel: dnsLabel
    }
  }
}

output publicIpId string = publicIp.id
output ipAddress string = publicIp.properties.ipAddress
output fqdn string = empty(dnsLabel) ? '' : publicIp.properties.dnsSettings.fqdn
