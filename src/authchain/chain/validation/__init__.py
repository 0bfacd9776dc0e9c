"""Block validity predicates: `V_base` (cheap, block-local) and `V_auth` (ML authenticity)."""
