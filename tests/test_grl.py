import torch

from removal_bench.methods.base import reverse_gradient
from removal_bench.core.encoders import MLP
from removal_bench.methods.grl import GradientReversalMethod, ganin_schedule


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))


def test_encoder_ascends_the_adversary_loss_while_the_adversary_descends_it():
    torch.manual_seed(0)
    hparams = {k: p.default for k, p in GradientReversalMethod.hparams.items()} | {"ramp": False, "lambda": 0.5}
    method = GradientReversalMethod(MLP((4,), 8, 6), 2, 2, hparams, epochs=1)
    x, s = torch.randn(20, 4), torch.randint(0, 2, (20,))
    z = method.encoder(x).detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(method.adversary(reverse_gradient(z, method.scale)), s)
    loss.backward()
    reversed_grad = z.grad.clone()
    z.grad = None
    plain = torch.nn.functional.cross_entropy(method.adversary(z), s)
    plain.backward()
    assert torch.allclose(reversed_grad, -0.5 * z.grad)
    # the adversary's own parameters get the ordinary (descending) gradient
    assert all(p.grad is not None for p in method.adversary.parameters())


def test_ganin_schedule_ramps_from_zero_towards_one():
    assert ganin_schedule(0.0) == 0.0
    assert 0.98 < ganin_schedule(1.0) < 1.0
    assert ganin_schedule(0.2) < ganin_schedule(0.5)


def test_lambda_ramps_per_iteration_over_the_whole_of_training():
    """Ganin's p counts iterations: within one epoch the scale already grows, and it reaches its end at the last step."""
    torch.manual_seed(0)
    hparams = {k: p.default for k, p in GradientReversalMethod.hparams.items()} | {"lambda": 1.0}
    method = GradientReversalMethod(MLP((4,), 8, 6), 2, 2, hparams, epochs=2, steps_per_epoch=5)
    x, y, s = torch.randn(16, 4), torch.randint(0, 2, (16,)), torch.randint(0, 2, (16,))
    scales = []
    for _ in range(10):
        method.update(x, y, s)
        scales.append(method.scale)
    assert scales == [ganin_schedule(step / 10) for step in range(10)]
    assert scales[0] == 0.0 and len(set(scales[:5])) == 5  # moves within the first epoch
