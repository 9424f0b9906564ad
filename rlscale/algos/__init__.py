"""Recipe axes: settings (pydantic, light) and the torch implementations beside them."""


def registrar(table: dict):
    """A decorator factory that files functions in `table` under a config name:
    `register_loss = registrar(POLICY_LOSSES)`, then `@register_loss("grpo")`."""
    def register(name: str):
        def deco(fn):
            table[name] = fn
            return fn
        return deco
    return register
