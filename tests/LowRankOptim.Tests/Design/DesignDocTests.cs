using System.Reflection;
using System.Text.RegularExpressions;
using FluentAssertions;
using Xunit;

namespace LowRankOptim.Tests.Design;

/// <summary>docs/design.md states the facts of the code it describes.</summary>
public sealed partial class DesignDocTests
{
    private static string RepositoryFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LowRankOptim.sln"))) return Path.Combine(dir.FullName, relative);
        throw new DirectoryNotFoundException("LowRankOptim.sln not found above the test output");
    }

    [GeneratedRegex(@"\*\*(\d+) public types\*\*")]
    private static partial Regex PublicTypeCount();

    [Fact]
    public void ThePublicTypeCountIsTheAssemblysOwn()
    {
        var text = File.ReadAllText(RepositoryFile("docs/design.md"));
        var match = PublicTypeCount().Match(text);
        match.Success.Should().BeTrue("docs/design.md states the public type count as **N public types**");
        var types = typeof(LowRankOptimizer).Assembly.GetExportedTypes();
        int.Parse(match.Groups[1].Value).Should().Be(types.Length,
            $"LowRankOptim.dll exports {string.Join(", ", types.Select(t => t.Name).Order())}");
    }

    [Fact]
    public void TheEngineTestsNoMethodType()
    {
        // The engine and the optimizer know the extension interfaces only: no method's config, rule or subspace.
        var methodTypes = typeof(LowRankOptimizer).Assembly.GetTypes()
            .Where(t => t.Namespace == "LowRankOptim" && t.Name != nameof(FullSpace)
                && (typeof(IProjectionConfig).IsAssignableFrom(t) || typeof(IUpdateRuleConfig).IsAssignableFrom(t)
                    || typeof(ISubspace).IsAssignableFrom(t) || typeof(IUpdateRule).IsAssignableFrom(t)) && !t.IsInterface)
            .Select(t => t.Name).ToHashSet();
        methodTypes.Should().Contain(["AdamConfig", "SvdProjection", "ApolloProjection", "BasisSubspace"]);
        foreach (var file in new[] { "src/LowRankOptim/Engine/StepEngine.cs", "src/LowRankOptim/Engine/ParameterStep.cs", "src/LowRankOptim/Optimizer/LowRankOptimizer.cs" })
        {
            var code = File.ReadAllText(RepositoryFile(file));
            methodTypes.Where(name => Regex.IsMatch(code, $@"\b{name}\b")).Should().BeEmpty($"{file} names no method type");
        }
    }
}
