// AKS cluster
//
// A managed Kubernetes cluster with a system-assigned identity, Azure CNI overlay networking,
// RBAC and one autoscaling system node pool. Outputs the cluster's id, name, FQDN and the kubelet
// identity's object id.

@description('Name of the cluster.')
@minLength(1)
@maxLength(63)
param clusterName string

@description('Azure region of the cluster.')
param location string = resourceGroup().location

@description('DNS prefix of the API server (default: the cluster name).')
param dnsPrefix string = clusterName

@description('Kubernetes version; empty for the region default.')
param kubernetesVersion string = ''

@description('VM size of the system node pool.')
param nodeVmSize string = 'Standard_D2s_v5'

@description('Minimum number of nodes.')
@minValue(1)
@maxValue(100)
param minNodeCount int = 1

@description('Maximum number of nodes.')
@minValue(1)
@maxValue(100)
param maxNodeCount int = 3

@description('Tags applied to the cluster.')
param tags object = {}

resource cluster 'Microsoft.ContainerService/managedClusters@2024-05-01' = {
  name: clusterName
  location: location
  tags: union(tags, { 'managed-by': 'multicloud' })
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    dnsPrefix: dnsPrefix
    kubernetesVersion: empty(kubernetesVersion) ? null : kubernetesVersion
    enableRBAC: true
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        vmSize: nodeVmSize
        osType: 'Linux'
        count: minNodeCount
        minCount: minNodeCount
        maxCount: maxNodeCount
        enableAutoScaling: true
        type: 'VirtualMachineScaleSets'
      }
    ]
    networkProfile: {
      networkPlugin: 'azure'
      networkPluginMode: 'overlay'
      loadBalancerSku: 'standard'
    }
  }
}

output clusterId string = cluster.id
output clusterName string = cluster.name
output controlPlaneFqdn string = cluster.properties.fqdn
output kubeletObjectId string = cluster.properties.identityProfile.kubeletidentity.objectId
