"""Running kbtool on clusters: container engines, batch schedulers and site profiles."""
