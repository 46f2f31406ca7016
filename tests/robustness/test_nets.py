"""Tests for robustness.nets (methods.md section 2)."""

import math

import pytest
import torch
from torch import nn

from robustness import nets
from robustness.nets import INITS, build, count_parameters, init_weights, names

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)

INPUT_SHAPE = {
    "mlp1000": MNIST,
    "mlp1200": MNIST,
    "lenet5": MNIST,
    "madry_cnn": MNIST,
    "critic": MNIST,
    "nin": CIFAR,
}


def conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def nin_params(c=3, k=10):
    return (
        # block 1
        conv(c, 192, 5)
        + conv(192, 160, 1)
        + conv(160, 96, 1)
        # block 2
        + conv(96, 192, 5)
        + conv(192, 192, 1)
        + conv(192, 192, 1)
        # block 3
        + conv(192, 192, 3)
        + conv(192, 192, 1)
        + conv(192, k, 1)
    )


# Spec numbers (methods.md section 2); nin by formula.
PARAMS = {
    "mlp1000": 2_797_010,
    "mlp1200": 3_836_410,
    "lenet5": 582_026,
    "madry_cnn": 3_274_634,
    "critic": 2_395_210,
    "nin": nin_params(),
}

DROPOUT_NETS = ["mlp1000", "mlp1200", "lenet5", "madry_cnn", "nin"]


def batch(name, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *INPUT_SHAPE[name]), generator=g)


def last_linear_or_conv(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]


def test_registry_names():
    assert names() == sorted(PARAMS)
    assert set(nets.NETWORKS) == set(PARAMS)
    assert INITS == ("torch", "truncnormal", "glorot")


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_forward_shape_dtype_finite(name):
    model = build(name).eval()
    with torch.no_grad():
        out = model(batch(name))
    assert out.shape == (3, 10)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    assert count_parameters(build(name)) == PARAMS[name]


def test_nin_formula_spelled_out():
    # 14,592 + 30,880 + 15,456 + 460,992 + 37,056 + 37,056 + 331,968 + 37,056 + 1,930
    assert nin_params() == 966_986
    assert nin_params(k=5) == 966_986 - 5 * 193


@pytest.mark.parametrize("name", DROPOUT_NETS)
def test_dropout_variant_same_count_and_keys(name):
    plain = build(name, dropout=0.0)
    dropped = build(name, dropout=0.5)
    assert count_parameters(dropped) == PARAMS[name]
    assert count_parameters(plain) == PARAMS[name]
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in dropped.state_dict().items()
    }
    assert sum(isinstance(m, nn.Dropout) for m in dropped.modules()) >= 2
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_dropout_placement():
    mlp = build("mlp1000", dropout=0.3)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Flatten"] + ["Linear", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert all(m.p == 0.3 for m in mlp if isinstance(m, nn.Dropout))
    lenet = build("lenet5", dropout=0.5)
    kinds = [type(m).__name__ for m in lenet]
    i = kinds.index("Flatten")
    assert kinds[i:] == ["Flatten", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert lenet[i + 2].out_features == 512


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_num_classes_changes_last_layer(name):
    model = build(name, num_classes=5)
    last = last_linear_or_conv(model)
    assert last.out_channels == 5 if isinstance(last, nn.Conv2d) else last.out_features == 5
    fan_in = last.weight[0].numel()
    assert count_parameters(model) == PARAMS[name] - 5 * (fan_in + 1)
    with torch.no_grad():
        assert model.eval()(batch(name)).shape == (3, 5)


@pytest.mark.parametrize("name", ["mlp1000", "lenet5", "madry_cnn", "critic"])
def test_cifar_shaped_input(name):
    model = build(name, in_shape=CIFAR).eval()
    with torch.no_grad():
        out = model(torch.rand(2, *CIFAR))
    assert out.shape == (2, 10)


def test_flattened_sizes_from_in_shape():
    # lenet5 on 3×32×32: 32→28→14→10→5, so fc sees 64·5·5; madry: 32→16→8, fc sees 64·8·8
    lenet = build("lenet5", in_shape=CIFAR)
    assert [m for m in lenet if isinstance(m, nn.Linear)][0].in_features == 64 * 5 * 5
    madry = build("madry_cnn", in_shape=CIFAR)
    assert [m for m in madry if isinstance(m, nn.Linear)][0].in_features == 64 * 8 * 8
    assert build("mlp1200", in_shape=CIFAR)[1].in_features == 3 * 32 * 32
    assert count_parameters(build("nin", in_shape=(1, 28, 28))) == nin_params(c=1)


def test_critic_noise_in_eval_mode():
    model = build("critic").eval()
    x = batch("critic")
    with torch.no_grad():
        a, b = model(x), model(x)
        assert not torch.equal(a, b)
        torch.manual_seed(123)
        c = model(x)
        torch.manual_seed(123)
        d = model(x)
    assert torch.equal(c, d)
    noises = [m for m in model.modules() if isinstance(m, nets.GaussianNoise)]
    assert [m.std for m in noises] == [0.1, 0.5, 0.5]


def test_critic_without_noise_is_deterministic():
    model = build("critic", input_noise=0.0, hidden_noise=0.0).train()
    x = batch("critic")
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_gaussian_noise_std():
    torch.manual_seed(0)
    noise = nets.GaussianNoise(0.5).eval()
    x = torch.zeros(200_000)
    assert noise(x).std().item() == pytest.approx(0.5, rel=0.02)
    with pytest.raises(ValueError):
        nets.GaussianNoise(-1.0)


@pytest.mark.parametrize("name", DROPOUT_NETS)
def test_dropout_train_vs_eval(name):
    torch.manual_seed(0)
    model = build(name, dropout=0.5)
    x = batch(name)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ["mlp1000", "lenet5", "madry_cnn"])
def test_no_dropout_is_deterministic_in_train_mode(name):
    model = build(name).train()
    x = batch(name)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_truncnormal_init(name):
    torch.manual_seed(0)
    model = build(name, init="truncnormal")
    for m in layers(model):
        fan_in = m.weight[0].numel()
        bound = 2 * math.sqrt(2.6 / fan_in)
        assert m.weight.abs().max().item() <= bound + 1e-6
        assert torch.count_nonzero(m.bias) == 0


def test_truncnormal_std_on_big_layer():
    torch.manual_seed(0)
    layer = nn.Linear(1000, 1000)
    init_weights(layer, "truncnormal")
    sigma = math.sqrt(2.6 / 1000)
    # a normal truncated at ±2σ has std σ·sqrt(1 − 2·2·φ(2)/(Φ(2) − Φ(−2))) ≈ 0.8796σ
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    expected = sigma * math.sqrt(1 - 4 * phi2 / mass)
    assert layer.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert layer.weight.mean().item() == pytest.approx(0.0, abs=sigma * 0.01)
    assert layer.weight.abs().max().item() > 1.9 * sigma  # really uses the tails


def test_truncnormal_conv_fan_in():
    torch.manual_seed(0)
    layer = nn.Conv2d(64, 128, 5)
    init_weights(layer, "truncnormal")
    sigma = math.sqrt(2.6 / (64 * 25))
    assert layer.weight.abs().max().item() <= 2 * sigma + 1e-6
    assert layer.weight.std().item() == pytest.approx(0.8796 * sigma, rel=0.03)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_glorot_init(name):
    torch.manual_seed(0)
    model = build(name, init="glorot")
    for m in layers(model):
        receptive = m.weight[0, 0].numel()
        fan_in = m.weight.shape[1] * receptive
        fan_out = m.weight.shape[0] * receptive
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert m.weight.abs().max().item() <= bound + 1e-6
        assert torch.count_nonzero(m.bias) == 0


def test_glorot_spread_on_big_layer():
    torch.manual_seed(0)
    layer = nn.Linear(1000, 500)
    init_weights(layer, "glorot")
    bound = math.sqrt(6 / 1500)
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert layer.weight.abs().max().item() > 0.99 * bound


def test_torch_init_leaves_default():
    torch.manual_seed(7)
    a = build("lenet5")
    torch.manual_seed(7)
    b = build("lenet5", init="torch")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert any(torch.count_nonzero(m.bias) > 0 for m in layers(b))


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("init", INITS)
def test_build_deterministic_under_seed(name, init):
    torch.manual_seed(42)
    a = build(name, init=init).state_dict()
    torch.manual_seed(42)
    b = build(name, init=init).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(43)
    c = build(name, init=init).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_blindspot_config_round_trip(name):
    model = build(name, num_classes=7, init="glorot")
    cfg = model.blindspot_config
    assert cfg["arch"] == name
    assert cfg["num_classes"] == 7 and cfg["init"] == "glorot"
    assert cfg["in_shape"] == INPUT_SHAPE[name]
    assert "dropout" in cfg if name in DROPOUT_NETS else "input_noise" in cfg
    rebuilt = build(**cfg)
    assert rebuilt.blindspot_config == cfg
    sa, sb = model.state_dict(), rebuilt.state_dict()
    assert sa.keys() == sb.keys()
    assert all(sa[k].shape == sb[k].shape for k in sa)


def test_config_records_defaults():
    assert build("mlp1200").blindspot_config == {
        "arch": "mlp1200",
        "in_shape": (1, 28, 28),
        "num_classes": 10,
        "dropout": 0.0,
        "init": "torch",
    }
    assert build("nin").blindspot_config["dropout"] == 0.5
    cfg = build("critic", hidden_noise=0.3).blindspot_config
    assert cfg["input_noise"] == 0.1 and cfg["hidden_noise"] == 0.3
    # a JSON round trip turns the shape into a list; build accepts it and normalises
    assert build("lenet5", in_shape=[1, 28, 28]).blindspot_config["in_shape"] == (1, 28, 28)


def test_unknown_network():
    with pytest.raises(ValueError, match="unknown network 'resnet'") as e:
        build("resnet")
    for name in PARAMS:
        assert name in str(e.value)


def test_unknown_kwarg():
    with pytest.raises(ValueError, match="'dropuot'") as e:
        build("lenet5", dropuot=0.5)
    assert "dropout" in str(e.value)  # lists what it accepts
    with pytest.raises(ValueError, match="'dropout'"):
        build("critic", dropout=0.5)


def test_unknown_init_scheme():
    with pytest.raises(ValueError, match="unknown init scheme 'he'") as e:
        build("mlp1000", init="he")
    assert all(s in str(e.value) for s in INITS)
    with pytest.raises(ValueError, match="truncnormal"):
        init_weights(nn.Linear(2, 2), "xavier")


@pytest.mark.parametrize(
    "kw",
    [{"in_shape": (28, 28)}, {"num_classes": 0}, {"dropout": 1.0}, {"in_shape": (1, 8, 8)}],
)
def test_bad_values(kw):
    with pytest.raises(ValueError):
        build("lenet5", **kw)


def test_build_name_and_arch():
    assert build(name="mlp1000").blindspot_config["arch"] == "mlp1000"
    assert build(arch="mlp1000").blindspot_config["arch"] == "mlp1000"
    assert build("mlp1000", arch="mlp1000").blindspot_config["arch"] == "mlp1000"
    with pytest.raises(ValueError, match="conflicting"):
        build("mlp1000", arch="lenet5")
    with pytest.raises(ValueError, match="choose one of"):
        build()
