using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;

namespace LowRankOptim.Tests.Reference;

/// <summary>
/// Replays every golden fixture (tests/fixtures and LOWRANKOPTIM_FIXTURES_DIRS): parameters after every
/// step must equal the reference implementation's within |a − e| ≤ 1e-5 + 1e-5·|e| (fixtures README).
/// </summary>
public sealed class GoldenFixtureTests
{
    private const double Atol = 1e-5, Rtol = 1e-5;

    public static IEnumerable<object[]> Cases() =>
        FixtureFiles.All().Select(path => GoldenFixture.Peek(path) is var (name, algorithm)
            ? new object[] { name, algorithm, path }
            : throw new InvalidOperationException());

    [FixtureTheory]
    [MemberData(nameof(Cases))]
    public void Fixture(string name, string algorithm, string path) => Replay(name, algorithm, path, KernelPreference.Auto);

    /// <summary>
    /// Replays one fixture; <paramref name="kernel"/> selects the kernel of rules that have one, and the
    /// parameters and gradients take <paramref name="dtype"/> (the fixtures' values are float32).
    /// </summary>
    internal static void Replay(string name, string algorithm, string path, KernelPreference kernel, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        var f = GoldenFixture.Load(path);
        f.Name.Should().Be(name);
        f.Algorithm.Should().Be(algorithm);
        using var scope = torch.NewDisposeScope();
        var parameters = f.Parameters.ToDictionary(p => p.Name,
            p => new Parameter(torch.tensor(p.Initial, dtype: torch.float32).reshape(p.Shape).to(dtype)));
        using var optimizer = FixtureCatalog.Build(f, parameters, kernel);
        var groups = optimizer.ParamGroups.ToList();
        for (var k = 0; k < f.Steps.Count; k++)
        {
            var step = f.Steps[k];
            if (step.Lr is { } lrs)
                for (var i = 0; i < lrs.Length; i++) groups[i].LearningRate = lrs[i];
            foreach (var (pname, p) in parameters)
                p.grad = torch.tensor(step.Gradients[pname], dtype: torch.float32).reshape(p.shape).to(dtype);
            optimizer.step();
            foreach (var (pname, p) in parameters)
                TensorAssert.Close(p, step.Expected[pname], Atol, Rtol, $"{name}: parameter '{pname}' after step {k + 1}");
        }
    }
}
