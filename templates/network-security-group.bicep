// Network security group
//
// A network security group that allows inbound traffic on the given TCP ports from the given
// source and denies the rest of the internet. Outputs its id and name.

@description('Name of the network security group.')
@minLength(1)
@maxLength(80)
param nsgName string

@description('Azure region of the group.')
param location string = resourceGroup().location

@description('TCP ports allowed inbound.')
param allowedPorts array = [
  '443'
]

@description('Source address prefix allowed (CIDR, a service tag or *).')
param sourceAddressPrefix string = 'VirtualNetwork'

@description('Tags applied to the group.')
param tags object = {}

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-01-01' = {
  name: nsgName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  properties: {
    securityRules: [
      {
        name: 'allow-inbound-ports'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: sourceAddressPrefix
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRanges: allowedPorts
        }
      }
      {
        name: 'deny-internet-inbound'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

output nsgId string = nsg.id
output nsgName string = nsg.name
