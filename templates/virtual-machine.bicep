// Linux virtual machine
//
// An Ubuntu VM with SSH key login only, in a new virtual network and subnet, with a network
// interface and an optional public IP. Outputs the VM's id, its private IP and, when created,
// its public IP.

@description('Name of the virtual machine.')
@minLength(1)
@maxLength(64)
param vmName string

@description('Azure region of the VM.')
param location string = resourceGroup().location

@description('VM size.')
param vmSize string = 'Standard_B2s'

@description('Administrator user name.')
param adminUsername string = 'azureuser'

@description('SSH public key of the administrator (ssh-rsa or ssh-ed25519).')
@secure()
param sshPublicKey string

@description('Create a public IP for the VM.')
param createPublicIp bool = false

@description('Address space of the VM\'s virtual network.')
param addressPrefix string = '10.1.0.0/16'

@description('Address range of the VM\'s subnet.')
param subnetPrefix string = '10.1.0.0/24'

@description('Tags applied to every resource.')
param tags object = {}

var allTags = union(tags, { 'managed-by': 'multicloud' })

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: '${vmName}-vnet'
  location: location
  tags: allTags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'default'
        properties: {
          addressPrefix: subnetPrefix
        }
      }
    ]
  }
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-01-01' = if (createPublicIp) {
  name: '${vmName}-ip'
  location: location
  tags: allTags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

resource nic 'Microsoft.Network/networkInterfaces@2024-01-01' = {
  name: '${vmName}-nic'
  location: location
  tags: allTags
  properties: {
    ipConfigurations: [
      {
        name: 'ipconfig1'
        properties: {
          privateIPAllocationMethod: 'Dynamic'
          subnet: {
            id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'default')
          }
          publicIPAddress: createPublicIp ? {
            id: publicIp.id
          } : null
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-03-01' = {
  name: vmName
  location: location
  tags: allTags
  properties: {
    hardwareProfile: {
      vmSize: vmSize
    }
    osProfile: {
      computerName: vmName
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
      networkInterfaces: [
        {
          id: nic.id
        }
      ]
    }
  }
}

output vmId string = vm.id
output privateIpAddress string = nic.properties.ipConfigurations[0].properties.privateIPAddress
output publicIpAddress string = createPublicIp ? publicIp.properties.ipAddress : ''
