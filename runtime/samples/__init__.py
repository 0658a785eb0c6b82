"""Sample Lambda events of every source (AWS documentation examples) for ``invoke --sample``."""
