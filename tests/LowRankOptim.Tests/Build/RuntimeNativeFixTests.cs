using System.Reflection;
using FluentAssertions;
using LowRankOptim.Build;
using Xunit;

namespace LowRankOptim.Tests.Build;

/// <summary>
/// The run-time half of the GLIBCXX fix (TorchSharpNative, docs/native-loading.md). The whole route — an app
/// outside this repository, through a ProjectReference or published with the build-time fix off — is run by
/// tests/Consumer/run-routes.sh in .ci/run; these tests check the pieces in this process.
/// </summary>
[Collection(nameof(NativeCacheCollection))]
public sealed class RuntimeNativeFixTests
{
    private const string Version = "GLIBCXX_3.4.32";

    private static string PackagedLibrary()
    {
        var root = typeof(RuntimeNativeFixTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "NuGetPackageRoot").Value!;
        var version = typeof(TorchSharp.torch).Assembly.GetName().Version!;
        return Path.Combine(root, "torchsharp", $"{version.Major}.{version.Minor}.{version.Build}", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    [Fact]
    public void InThisProcessTheFixRanAtLoadAndFoundNothingToDo()
    {
        // The test project's output is patched by the build (Directory.Build.targets), so the run-time fix has
        // nothing to do here: either libstdc++ has the version or the library's requirement is already weak.
        var report = TorchSharpNative.Report;
        report.Should().NotBeNull("the module initializer ran when LowRankOptim was loaded");
        report!.Outcome.Should().BeOneOf(NativeFixOutcome.NotNeeded, NativeFixOutcome.AlreadyWeak);
        TorchSharpNative.Prepare().Should().BeSameAs(report, "it runs once");
        if (report.Outcome == NativeFixOutcome.AlreadyWeak)
            report.Library.Should().Be(Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"));
    }

    [Fact]
    public void TheLibraryIsFoundWhereTheRuntimeProbesFirst()
    {
        TorchSharpNative.SearchDirectories().Should().Contain(d => Path.GetFullPath(d).TrimEnd('/') == Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"));
        TorchSharpNative.FindLibrary().Should().Be(Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"));
        TorchSharpNative.LoadedLibraries().Should().Contain(p => Path.GetFileName(p) == "libLibTorchSharp.so", "TorchSharp is loaded in the test process");
    }

    [Fact]
    public void TheCopyNeedsLibtorchFromBesideTheOriginal()
    {
        ElfVersionNeeds.ReadNeeded(File.ReadAllBytes(PackagedLibrary()))
            .Should().StartWith(["libtorch.so", "libc10.so", "libtorch_cpu.so"]).And.Contain("libstdc++.so.6");
    }

    [Fact]
    public void PatchingInMemoryChangesTheSameByteAsPatchingTheFile()
    {
        var original = File.ReadAllBytes(PackagedLibrary());
        var image = (byte[])original.Clone();
        ElfVersionNeeds.MarkWeak(image, Version).Should().Be(WeakenResult.Patched);
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, original);
            ElfVersionNeeds.MarkWeak(file, Version).Should().Be(WeakenResult.Patched);
            File.ReadAllBytes(file).Should().Equal(image);
        }
        finally { File.Delete(file); }
        ElfVersionNeeds.MarkWeak(image, Version).Should().Be(WeakenResult.AlreadyWeak);
    }

    [Fact]
    public void TheCopyIsContentAddressedReusedAndRewrittenWhenItsBytesDiffer()
    {
        var cache = Directory.CreateTempSubdirectory("lowrankoptim-cache-").FullName;
        var before = Environment.GetEnvironmentVariable("LOWRANKOPTIM_NATIVE_CACHE");
        Environment.SetEnvironmentVariable("LOWRANKOPTIM_NATIVE_CACHE", cache);
        try
        {
            var image = File.ReadAllBytes(PackagedLibrary());
            ElfVersionNeeds.MarkWeak(image, Version);
            var path = TorchSharpNative.WriteCopy(image);
            path.Should().StartWith(Path.Combine(cache, "glibcxx-weak")).And.EndWith("/libLibTorchSharp.so");
            File.ReadAllBytes(path).Should().Equal(image);
            if (!OperatingSystem.IsWindows())
                File.GetUnixFileMode(Path.GetDirectoryName(path)!).Should().Be(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var written = File.GetLastWriteTimeUtc(path);

            TorchSharpNative.WriteCopy(image).Should().Be(path);
            File.GetLastWriteTimeUtc(path).Should().Be(written, "an intact copy is reused");

            File.WriteAllText(path, "tampered");
            TorchSharpNative.WriteCopy(image).Should().Be(path);
            File.ReadAllBytes(path).Should().Equal(image, "a copy whose bytes differ is replaced");
            Directory.GetFiles(Path.GetDirectoryName(path)!).Should().ContainSingle("no temporary file is left behind");
        }
        finally
        {
            Environment.SetEnvironmentVariable("LOWRANKOPTIM_NATIVE_CACHE", before);
            Directory.Delete(cache, recursive: true);
        }
    }
}

/// <summary>Tests that set LOWRANKOPTIM_NATIVE_CACHE run one at a time.</summary>
[CollectionDefinition(nameof(NativeCacheCollection), DisableParallelization = true)]
public sealed class NativeCacheCollection;
