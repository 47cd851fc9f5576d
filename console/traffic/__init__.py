"""Traffic on the fleet: load balancers rolldeck drives (HAProxy's runtime API)."""
