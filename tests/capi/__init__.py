"""Test-side Cluster API v1.14 rendering: kubeadm bootstrap user-data and kubeadm documents (not product code)."""
