"""scripts/batch_ray.py in parts: starting Ray (cluster), where files are (files), and the
two pipelines, ``query`` and ``embed``. Ray workers cannot import scripts/, so this package's
actors and functions travel to them by value (cluster.start_ray)."""
