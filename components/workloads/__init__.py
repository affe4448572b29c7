"""In-cluster workloads: the runner managers and what runs beside them."""
