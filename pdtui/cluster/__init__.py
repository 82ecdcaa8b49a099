"""Beyond one box: the Slurm backend (one job, a job step per instance) and the GPU view
per node. Kubernetes manifests are a renderer and live in pdtui.model.k8s."""
