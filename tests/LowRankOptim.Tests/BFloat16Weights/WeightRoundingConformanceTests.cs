using FluentAssertions;
using LowRankOptim.Tests.PerLayer;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.BFloat16Weights;

/// <summary>
/// Every catalog method on a bfloat16 model with stochastically rounded weights (<see cref="WeightRounding"/>):
/// a run saved after k steps and loaded into a fresh model and optimizer continues exactly as the uninterrupted run, bit
/// for bit (the random numbers are keyed by seed, parameter and step: nothing is saved); the rounding is not ignored (the
/// weights differ from nearest rounding's); and the same holds in the per-layer mode.
/// </summary>
public sealed class WeightRoundingConformanceTests
{
    private static readonly WeightRounding Stochastic = WeightRounding.Stochastic(seed: 11);

    public static TheoryData<string> Methods() => MethodCatalog.Names();

    /// <summary>The catalog row's optimizer over <paramref name="model"/>, rebuilt with every group's weights rounded by <paramref name="rounding"/>.</summary>
    internal static LowRankOptimizer Build(CatalogMethod method, nn.Module model, WeightRounding rounding)
    {
        using var source = method.Create(model);
        var groups = source.ParamGroups.Cast<LowRankParamGroup>().Select(g =>
        {
            var options = new LowRankOptions();
            options.CopyFrom(g.Options);
            options.WeightRounding = rounding;
            return new LowRankParamGroup(g.Parameters, options);
        }).ToList();
        return new LowRankOptimizer(groups, new LowRankOptions());
    }

    private static Sequential Model(long seed)
    {
        var model = TestProblems.Mlp(seed);
        model.to(ScalarType.BFloat16);
        return model;
    }

    private static void Train(Sequential model, LowRankOptimizer opt, int steps, Tensor x, Tensor y)
    {
        for (var i = 0; i < steps; i++)
        {
            TestProblems.LossAndBackward(model, x, y);
            opt.step();
            opt.zero_grad();
        }
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void AResumedRunRoundsAsTheUninterruptedOne(string method)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        var (x, y) = TestProblems.Data(5);
        (x, y) = (x.to(ScalarType.BFloat16), y.to(ScalarType.BFloat16));
        const int k = 5, n = 6;
        var dir = Directory.CreateTempSubdirectory("lowrankoptim-weight-rounding-");
        try
        {
            var straight = Model(5);
            using (var opt = Build(row, straight, Stochastic)) Train(straight, opt, k + n, x, y);

            var first = Model(5);
            using (var opt = Build(row, first, Stochastic))
            {
                Train(first, opt, k, x, y);
                first.save(Path.Combine(dir.FullName, "model.bin"));
                opt.save_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
            }
            var resumed = Model(999);
            resumed.load(Path.Combine(dir.FullName, "model.bin"));
            using (var opt = Build(row, resumed, Stochastic))
            {
                opt.load_state_dict(Path.Combine(dir.FullName, "optimizer.bin"));
                opt.ParamGroups.Cast<LowRankParamGroup>().Should().OnlyContain(g => g.Options.WeightRounding == Stochastic, "the rounding is part of the loaded options");
                Train(resumed, opt, n, x, y);
            }
            foreach (var ((name, a), b) in resumed.named_parameters().Zip(straight.parameters()))
                TensorAssert.Identical(a, b, $"{method}: {name} after the resumed run");

            var nearest = Model(5);
            using (var opt = Build(row, nearest, WeightRounding.Nearest)) Train(nearest, opt, k + n, x, y);
            nearest.parameters().Zip(straight.parameters()).Should().Contain(p => !p.First.eq(p.Second).all().item<bool>(),
                $"{method}: stochastic rounding changes the weights (the option is not ignored)");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>The per-layer mode steps through the same engine: bf16 weights, stochastic rounding, a checkpoint between steps.</summary>
    [Theory]
    [InlineData("dct-adamw")]
    [InlineData("galore-std")]
    [InlineData("adamw")]
    public void ThePerLayerModeResumesAsTheUninterruptedRun(string method)
    {
        using var scope = NewDisposeScope();
        var row = MethodCatalog.Get(method);
        const int k = 4, n = 4;

        Sequential BfModel(long seed)
        {
            var m = PerLayerRuns.Model(seed);
            m.to(ScalarType.BFloat16);
            return m;
        }

        void Run(Sequential model, LowRankOptimizer opt, int from, int to)
        {
            using var release = opt.ReleaseGradientsDuringBackward(model, accumulation_steps: 2);
            for (var step = from; step < to; step++)
            {
                for (var micro = 0; micro < 2; micro++)
                {
                    var (x, y) = PerLayerRuns.Data(step, micro);
                    PerLayerRuns.Backward(model, x.to(ScalarType.BFloat16), y.to(ScalarType.BFloat16));
                }
                opt.step();
                opt.zero_grad();
            }
        }

        var path = Path.GetTempFileName();
        try
        {
            var straight = BfModel(3);
            using (var opt = Build(row, straight, Stochastic)) Run(straight, opt, 0, k + n);

            var resumed = BfModel(3);
            using (var opt = Build(row, resumed, Stochastic))
            {
                Run(resumed, opt, 0, k);
                opt.save_state_dict(path);
            }
            using (var opt = Build(row, resumed, Stochastic))
            {
                opt.load_state_dict(path);
                Run(resumed, opt, k, k + n);
            }
            foreach (var ((name, a), b) in resumed.named_parameters().Zip(straight.parameters()))
                TensorAssert.Identical(a, b, $"{method} per layer: {name}");
            straight.parameters().Should().OnlyContain(p => p.dtype == ScalarType.BFloat16 && p.isfinite().all().item<bool>());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
