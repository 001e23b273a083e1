// Virtual network
//
// A virtual network with one address space and a default subnet. Outputs the network's and the
// subnet's ids.

@description('Name of the virtual network.')
@minLength(2)
@maxLength(64)
param vnetName string

@description('Azure region of the network.')
param location string = resourceGroup().location

@description('Address space of the network (CIDR).')
param addressPrefix string = '10.0.0.0/16'

@description('Name of the default subnet.')
param subnetName string = 'default'

@description('Address range of the default subnet (CIDR, inside the address space).')
param subnetPrefix string = '10.0.0.0/24'

@description('Tags applied to the network.')
param tags object = {}

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: vnetName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: subnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

output vnetId string = vnet.id
output vnetName string = vnet.name
output subnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetName)
