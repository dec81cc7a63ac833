using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Support;

/// <summary>Small deterministic models and data, seeded through explicit generators (tests run in parallel).</summary>
public static class TestProblems
{
    /// <summary>Linear(in, hidden) → tanh → Linear(hidden, out) with seeded weights.</summary>
    public static Sequential Mlp(long seed, int input = 12, int hidden = 20, int output = 6)
    {
        var model = nn.Sequential(("fc1", nn.Linear(input, hidden)), ("act", nn.Tanh()), ("fc2", nn.Linear(hidden, output)));
        Reseed(model, seed);
        return model;
    }

    /// <summary>Overwrites every parameter with seeded N(0, 0.3²) values.</summary>
    public static void Reseed(nn.Module model, long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in model.parameters())
            using (var v = randn(p.shape, generator: gen).mul_(0.3)) p.copy_(v);
    }

    /// <summary>Seeded inputs and targets for <see cref="Mlp"/>.</summary>
    public static (Tensor X, Tensor Y) Data(long seed, int batch = 16, int input = 12, int output = 6)
    {
        using var gen = new Generator((ulong)seed + 1000);
        return (randn([batch, input], generator: gen), randn([batch, output], generator: gen));
    }

    /// <summary>Forward, MSE loss and backward; the gradients are left on the parameters. Returns the loss (any dtype) as a double.</summary>
    public static double LossAndBackward(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        var loss = nn.functional.mse_loss(model.call(x), y);
        loss.backward();
        return loss.to(ScalarType.Float64).item<double>();
    }

    /// <summary>A seeded N(0, 1) matrix (no particular spectrum; for a prescribed one see RandomizedSvdProjectionTests.WithSpectrum).</summary>
    public static Tensor Gradient(long seed, long rows, long cols, ScalarType dtype = ScalarType.Float32)
    {
        using var gen = new Generator((ulong)seed);
        return randn([rows, cols], generator: gen).to(dtype);
    }

    /// <summary>A copy of every parameter's values.</summary>
    public static Tensor[] Snapshot(nn.Module model) => model.parameters().Select(p => p.detach().clone()).ToArray();
}
