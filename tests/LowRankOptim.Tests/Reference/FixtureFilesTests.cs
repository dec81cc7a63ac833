using FluentAssertions;
using LowRankOptim.Tests.Support;
using Xunit;

namespace LowRankOptim.Tests.Reference;

/// <summary>The fixture theory reads tests/fixtures and every directory named in LOWRANKOPTIM_FIXTURES_DIRS.</summary>
[Collection(SerialCollection.Name)] // sets a process-wide environment variable
public sealed class FixtureFilesTests
{
    [Fact]
    public void DirectoriesFromTheEnvironmentVariableAreAdded()
    {
        var a = Directory.CreateTempSubdirectory("fixtures-a-");
        var b = Directory.CreateTempSubdirectory("fixtures-b-");
        var saved = Environment.GetEnvironmentVariable(FixtureFiles.DirectoriesVariable);
        try
        {
            File.WriteAllText(Path.Combine(a.FullName, "extra_one.json"), "{}");
            File.WriteAllText(Path.Combine(b.FullName, "extra_two.json"), "{}");
            File.WriteAllText(Path.Combine(b.FullName, "ignored.txt"), "");
            Environment.SetEnvironmentVariable(FixtureFiles.DirectoriesVariable, a.FullName + Path.PathSeparator + b.FullName);
            var files = FixtureFiles.All().ToList();
            files.Should().Contain(Path.Combine(a.FullName, "extra_one.json")).And.Contain(Path.Combine(b.FullName, "extra_two.json"));
            files.Should().Contain(f => f.EndsWith("galore_adamw_std_tall.json"), "tests/fixtures is always read");
            files.Should().NotContain(f => f.EndsWith("ignored.txt"));

            Environment.SetEnvironmentVariable(FixtureFiles.DirectoriesVariable, Path.Combine(a.FullName, "missing"));
            var missing = () => FixtureFiles.All().ToList();
            missing.Should().Throw<DirectoryNotFoundException>().WithMessage("*LOWRANKOPTIM_FIXTURES_DIRS*missing*");
        }
        finally
        {
            Environment.SetEnvironmentVariable(FixtureFiles.DirectoriesVariable, saved);
            a.Delete(true);
            b.Delete(true);
        }
    }
}
