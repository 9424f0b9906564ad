import pytest
import torch
from transformers import LlamaForCausalLM

from rlscale import compute
from rlscale.zoo import ZOO_SIZES, llama_config


def test_model_shape_counts_matmul_params():
    model = LlamaForCausalLM(llama_config("xs"))
    shape = compute.ModelShape.from_hf(model)
    z = ZOO_SIZES["xs"]
    V = model.config.vocab_size
    per_layer = 4 * z.d_model**2 + 3 * z.d_model * z.d_ff + 2 * z.d_model  # attn, mlp, 2 norms
    assert shape.n_params == z.n_layers * per_layer + z.d_model + V * z.d_model  # + final norm + lm_head
    assert shape.n_params_total == shape.n_params + V * z.d_model
    assert shape.d_attn == z.d_model and shape.n_layers == z.n_layers


def test_forward_flops_is_2n_plus_attention():
    s = compute.ModelShape(n_params=1000, n_layers=2, d_attn=8, n_params_total=1200)
    # 3 tokens attend to 1, 2, 3 positions: attention = 2 * L * d * 6
    assert compute.forward_flops(s, 2, 1) == 2 * 1000 * 3 + 2 * 2 * 8 * 6
    assert compute.train_flops(s, [3]) == 3 * compute.forward_flops(s, 3, 0)
    assert compute.rollout_flops(s, [[(2, 1)], [(1, 2)]]) == 2 * compute.forward_flops(s, 3, 0)
    assert compute.pretrain_step_flops(s, 4, 3) == 4 * 3 * compute.forward_flops(s, 3, 0)


def test_forward_flops_matches_profiler_count():
    """The 2N-per-token rule against torch's own FLOP counter on a real zoo model."""
    from torch.utils.flop_counter import FlopCounterMode

    # Eager attention: plain matmuls the counter sees (it does not count CPU SDPA kernels).
    config = llama_config("xs")
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    shape = compute.ModelShape.from_hf(model)
    T = 64
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.randint(0, 50, (1, T)))
    measured = counter.get_total_flops()
    predicted = compute.forward_flops(shape, T, 0)
    # The counter sees full (unmasked) T x T attention, i.e. twice the causal work.
    predicted_full_attn = 2 * shape.n_params * T + 2 * 2 * shape.n_layers * shape.d_attn * T * T
    assert measured == pytest.approx(predicted_full_attn, rel=0.01)
    assert predicted < measured

