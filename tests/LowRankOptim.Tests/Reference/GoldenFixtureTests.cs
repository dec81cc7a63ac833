using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;

namespace LowRankOptim.Tests.Reference;

/// <summary>
/// Replays every golden fixture (tests/fixtures and LOWRANKOPTIM_FIXTURES_DIRS) on the optimizer the public
/// <see cref="LowRank"/> factory builds from the reference's arguments (<see cref="FixtureCatalog"/>), so the
/// conventions the factories choose are checked against the reference's numbers: parameters after every
/// step must equal the reference implementation's within |a − e| ≤ 1e-5 + 1e-5·|e| (fixtures README); the
/// parameters whose subspace was (re)computed in a step must be exactly those the fixture lists
/// (<c>extra.svd_refresh</c>, <c>extra.dct_indices</c>), and the DCT indices must match exactly, in order.
/// </summary>
public sealed class GoldenFixtureTests
{
    private const double Atol = 1e-5, Rtol = 1e-5;

    public static IEnumerable<object[]> Cases() =>
        FixtureFiles.All().Select(path => GoldenFixture.Peek(path) is var (name, algorithm)
            ? new object[] { name, algorithm, path }
            : throw new InvalidOperationException());

    [Theory]
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
        Replay(f, DctTransformMethod.MatrixProduct, kernel, dtype);
    }

    /// <summary>Runs the fixture's steps on an optimizer built by <see cref="FixtureCatalog.Build"/> and checks every step.</summary>
    internal static void Replay(GoldenFixture f, DctTransformMethod dctMethod, KernelPreference kernel = KernelPreference.Auto, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        var parameters = f.Parameters.ToDictionary(p => p.Name,
            p => new Parameter(torch.tensor(p.Initial, dtype: torch.float32).reshape(p.Shape).to(dtype)));
        using var optimizer = FixtureCatalog.Build(f, parameters, kernel, dctMethod);
        var groups = optimizer.ParamGroups.ToList();
        var states = parameters.ToDictionary(kv => kv.Key, kv => optimizer.States.Single(s => s.Parameter.Handle == kv.Value.Handle));
        for (var k = 0; k < f.Steps.Count; k++)
        {
            var step = f.Steps[k];
            var where = $"{f.Name} ({dctMethod}): step {k + 1}";
            if (step.Lr is { } lrs)
                for (var i = 0; i < lrs.Length; i++) groups[i].LearningRate = lrs[i];
            foreach (var (pname, p) in parameters)
                p.grad = torch.tensor(step.Gradients[pname], dtype: torch.float32).reshape(p.shape).to(dtype);
            var refreshesBefore = states.ToDictionary(kv => kv.Key, kv => kv.Value.Refreshes);
            optimizer.step();
            foreach (var (pname, p) in parameters)
                TensorAssert.Close(p, step.Expected[pname], Atol, Rtol, $"{where}: parameter '{pname}'");

            var refreshed = states.Where(kv => kv.Value.Refreshes > refreshesBefore[kv.Key]).Select(kv => kv.Key).Order().ToList();
            var svd = step.Extra?["svd_refresh"]?.AsArray().Select(n => (string)n!) ?? [];
            var dct = step.Extra?["dct_indices"]?.AsObject() ?? [];
            var random = step.Extra?["random_projection"]?.AsObject() ?? [];
            refreshed.Should().Equal(svd.Concat(dct.Select(kv => kv.Key)).Concat(random.Select(kv => kv.Key)).Order(),
                $"{where}: the parameters whose subspace was recomputed");
            // A seeded random projection declares the seed of its current matrix as the state counter 'projection_seed'.
            foreach (var (pname, projection) in random)
                states[pname].Subspace!.State.Counter("projection_seed").Value.Should().Be((long)projection!["seed"]!, $"{where}: the seed of '{pname}''s new random matrix");
            foreach (var (pname, expected) in dct)
            {
                var subspace = states[pname].Subspace.Should().BeOfType<DctSubspace>($"{where}: '{pname}' is a DCT parameter").Subject;
                subspace.Indices.Should().Equal(expected!.AsArray().Select(n => (long)n!), $"{where}: DCT indices of '{pname}' (exact, in slot order)");
            }
        }
    }
}
