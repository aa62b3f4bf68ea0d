"""Running a pipeline on Kubernetes: connecting through the official client
(:mod:`aipc.cluster.connect`) and applying the Kubernetes backend's objects in
dependency order (:mod:`aipc.cluster.apply`)."""
