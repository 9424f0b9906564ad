"""Recipe axes: settings (pydantic, light) and the torch implementations beside them."""
