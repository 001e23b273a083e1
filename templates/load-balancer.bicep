// Load balancer
//
// A Standard public load balancer: a new static public IP as frontend, one backend pool, a TCP
// health probe and one load-balancing rule. Outputs the balancer's id, its backend pool id and
// the frontend address.

@description('Name of the load balancer.')
@minLength(1)
@maxLength(80)
param loadBalancerName string

@description('Azure region of the load balancer.')
param location string = resourceGroup().location

@description('Port the frontend listens on.')
@minValue(1)
@maxValue(65535)
param frontendPort int = 80

@description('Port on the backend instances.')
@minValue(1)
@maxValue(65535)
param backendPort int = 80

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })
var frontendName = 'frontend'
var backendPoolName = 'backend'
var probeName = 'tcp-probe'

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-01-01' = {
  name: '${loadBalancerName}-ip'
  location: location
  tags: allTags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

resource loadBalancer 'Microsoft.Network/loadBalancers@2024-01-01' = {
  name: loadBalancerName
  location: location
  tags: allTags
  sku: {
    name: 'Standard'
  }
  properties: {
    frontendIPConfigurations: [
      {
        name: frontendName
        properties: {
          publicIPAddress: {
            id: publicIp.id
          }
        }
      }
    ]
    backendAddressPools: [
      {
        name: backendPoolName
      }
    ]
    probes: [
      {
        name: probeName
        properties: {
          protocol: 'Tcp'
          port: backendPort
          intervalInSeconds: 5
          numberOfProbes: 2
        }
      }
    ]
    loadBalancingRules: [
      {
        name: 'rule-${frontendPort}'
        properties: {
          protocol: 'Tcp'
          frontendPort: frontendPort
          backendPort: backendPort
          frontendIPConfiguration: {
            id: resourceId('Microsoft.Network/loadBalancers/frontendIPConfigurations', loadBalancerName, frontendName)
          }
          backendAddressPool: {
            id: resourceId('Microsoft.Network/loadBalancers/backendAddressPools', loadBalancerName, backendPoolName)
          }
          probe: {
            id: resourceId('Microsoft.Network/loadBalancers/probes', loadBalancerName, probeName)
          }
          disableOutboundSnat: true
        }
      }
    ]
  }
}

output loadBalancerId string = loadBalancer.id
output backendPoolId string = resourceId('Microsoft.Network/loadBalancers/backendAddressPools', loadBalancerName, backendPoolName)
output frontendIpAddress string = publicIp.properties.ipAddress
