using System.Reflection;
using FluentAssertions;
using LowRankOptim.Build;
using Xunit;

namespace LowRankOptim.Tests.Build;

/// <summary>
/// The build marks GLIBCXX_3.4.32 weak in the copied libLibTorchSharp.so exactly when this machine's
/// libstdc++ lacks it (docs/native-loading.md). These tests run the same patcher source the build runs.
/// </summary>
public sealed class GlibcxxWeakVersionTests
{
    private const string Version = "GLIBCXX_3.4.32";

    private static string PackagedLibrary()
    {
        var root = typeof(GlibcxxWeakVersionTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "NuGetPackageRoot").Value!;
        var version = typeof(TorchSharp.torch).Assembly.GetName().Version!;
        var path = Path.Combine(root, "torchsharp", $"{version.Major}.{version.Minor}.{version.Build}", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        File.Exists(path).Should().BeTrue($"the TorchSharp package holds {path}");
        return path;
    }

    private static string OutputLibrary() => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    private static ElfVersionNeeds.Requirement Requirement(string path) =>
        ElfVersionNeeds.ReadRequirements(File.ReadAllBytes(path)).Single(r => r.Version == Version);

    [Fact]
    public void ThePackagedLibraryRequiresTheVersionStrongly()
    {
        var requirement = Requirement(PackagedLibrary());
        requirement.File.Should().Be("libstdc++.so.6");
        (requirement.Flags & ElfVersionNeeds.VerFlagWeak).Should().Be(0);
    }

    [Fact]
    public void PatchingSetsTheWeakFlagByChangingOneByteAndIsIdempotent()
    {
        var copy = Path.GetTempFileName();
        try
        {
            File.Copy(PackagedLibrary(), copy, overwrite: true);
            var original = File.ReadAllBytes(copy);
            ElfVersionNeeds.MarkWeak(copy, Version).Should().Be(WeakenResult.Patched);
            var patched = File.ReadAllBytes(copy);
            patched.Length.Should().Be(original.Length);
            var changed = Enumerable.Range(0, original.Length).Where(i => original[i] != patched[i]).ToList();
            changed.Should().ContainSingle().Which.Should().Be((int)Requirement(copy).FlagsOffset);
            (Requirement(copy).Flags & ElfVersionNeeds.VerFlagWeak).Should().NotBe(0);
            // Every other requirement is untouched.
            ElfVersionNeeds.ReadRequirements(patched).Where(r => r.Version != Version).Select(r => (r.Version, r.Flags))
                .Should().Equal(ElfVersionNeeds.ReadRequirements(original).Where(r => r.Version != Version).Select(r => (r.Version, r.Flags)));

            ElfVersionNeeds.MarkWeak(copy, Version).Should().Be(WeakenResult.AlreadyWeak);
            File.ReadAllBytes(copy).Should().Equal(patched);
            ElfVersionNeeds.MarkWeak(copy, "GLIBCXX_99.0").Should().Be(WeakenResult.NotRequired);
            File.ReadAllBytes(copy).Should().Equal(patched);
        }
        finally { File.Delete(copy); }
    }

    [Fact]
    public void TheBuildOutputIsPatchedExactlyWhenTheMachineLacksTheVersion()
    {
        var system = ElfVersionNeeds.FindSystemLibrary("libstdc++.so.6");
        system.Should().NotBeNull("a Linux machine that runs TorchSharp has libstdc++");
        var definitions = ElfVersionNeeds.ReadDefinitions(File.ReadAllBytes(system!));
        definitions.Should().Contain("GLIBCXX_3.4", "the version-definition parser reads the system library");
        if (definitions.Contains(Version))
            File.ReadAllBytes(OutputLibrary()).Should().Equal(File.ReadAllBytes(PackagedLibrary()), "left untouched when libstdc++ has the version");
        else
            (Requirement(OutputLibrary()).Flags & ElfVersionNeeds.VerFlagWeak).Should().NotBe(0, "weakened when libstdc++ lacks the version");
    }

    [Fact]
    public void NonElfFilesAreRejected()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "not a shared library, just text that is long enough to hold an ELF header....");
            var act = () => ElfVersionNeeds.MarkWeak(path, Version);
            act.Should().Throw<InvalidDataException>().WithMessage("*not an ELF file*");
        }
        finally { File.Delete(path); }
    }
}
