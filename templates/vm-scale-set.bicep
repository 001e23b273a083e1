// Linux VM scale set
//
// A Flexible-orchestration scale set of Ubuntu VMs with SSH key login only, in a new virtual
// network. Outputs the scale set's id and name.

@description('Name of the scale set.')
@minLength(1)
@maxLength(64)
param vmssName string

@description('Azure region of the scale set.')
param location string = resourceGroup().location

@description('VM size of the instances.')
param vmSize string = 'Standard_B2s'

@description('Number of instances.')
@minValue(0)
@maxValue(100)
param instanceCount int = 2

@description('Administrator user name.')
param adminUsername string = 'azureuser'

@description('SSH public key of the administrator.')
@secure()
param sshPublicKey string

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: '${vmssName}-vnet'
  location: location
  tags: allTags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.2.0.0/16'
      ]
    }
    subnets: [
      {
        name: 'default'
        properties: {
          addressPrefix: '10.2.0.0/24'
        }
      }
    ]
  }
}

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-03-01' = {
  name: vmssName
  location: location
  tags: allTags
  sku: {
    name: vmSize
    capacity: instanceCount
  }
  properties: {
    orchestrationMode: 'Flexible'
    platformFaultDomainCount: 1
    virtualMachineProfile: {
      osProfile: {
        computerNamePrefix: take(vmssName, 9)
        adminUsername: adminUsername
        linuxConfiguration: {
          disablePasswordAuthentication: true
          ssh: {
            publicKeys: [
              {
                path: '/home/${adminUsername}/.ssh/authorized_keys'
                keyData: sshPublicKey
              }
            ]
          }
        }
      }
      storageProfile: {
        imageReference: {
          publisher: 'Canonical'
          offer: 'ubuntu-24_04-lts'
          sku: 'server'
          version: 'latest'
        }
        osDisk: {
          createOption: 'FromImage'
          managedDisk: {
            storageAccountType: 'StandardSSD_LRS'
          }
        }
      }
      networkProfile: {
        networkApiVersion: '2020-11-01'
        networkInterfaceConfigurations: [
          {
            name: '${vmssName}-nic'
            properties: {
              primary: true
              ipConfigurations: [
                {
                  name: 'ipconfig1'
                  properties: {
                    subnet: {
                      id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'default')
                    }
                  }
                }
              ]
            }
          }
        ]
      }
    }
  }
}

output vmssId string = vmss.id
output vmssName string = vmss.name
