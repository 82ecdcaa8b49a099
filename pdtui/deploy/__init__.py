"""`pdtui up / down / status / logs / restart`: the deployment commands over every backend.

Above both backends (pdtui.runtime's local process groups, pdtui.cluster's Slurm job), so that
neither imports the other; each command picks the backend from the profile or the run."""
