using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using LowRankOptim.Build;

namespace LowRankOptim;

/// <summary>What the run-time GLIBCXX fix of <see cref="TorchSharpNative"/> found and did.</summary>
public enum NativeFixOutcome
{
    /// <summary>Not Linux: there is nothing to fix.</summary>
    NotLinux,
    /// <summary>Turned off with the environment variable <c>LOWRANKOPTIM_SKIP_GLIBCXX_FIX=1</c>.</summary>
    Disabled,
    /// <summary>The process's libstdc++ defines GLIBCXX_3.4.32: TorchSharp's library loads as it is.</summary>
    NotNeeded,
    /// <summary>No <c>libLibTorchSharp.so</c> where the runtime looks for it (no TorchSharp backend package?).</summary>
    LibraryNotFound,
    /// <summary>The library the runtime will load already has a weak requirement (the build patched it) or none.</summary>
    AlreadyWeak,
    /// <summary><c>libLibTorchSharp.so</c> was already loaded when the fix ran: it is too late to change it.</summary>
    AlreadyLoaded,
    /// <summary>A patched copy of the library was loaded; TorchSharp uses it.</summary>
    Applied,
    /// <summary>The fix could not be applied; <see cref="NativeFixReport.Detail"/> says why.</summary>
    Failed,
}

/// <summary>The result of <see cref="TorchSharpNative.Prepare"/>.</summary>
/// <param name="Outcome">What was found and done.</param>
/// <param name="Library">The <c>libLibTorchSharp.so</c> the runtime would load, when one was found.</param>
/// <param name="PatchedCopy">The patched copy that was loaded instead (only for <see cref="NativeFixOutcome.Applied"/>).</param>
/// <param name="Detail">One sentence for a log.</param>
public sealed record NativeFixReport(NativeFixOutcome Outcome, string? Library, string? PatchedCopy, string Detail);

/// <summary>
/// The run-time half of the GLIBCXX_3.4.32 fix (docs/native-loading.md). TorchSharp 0.107's
/// <c>libLibTorchSharp.so</c> requires GLIBCXX_3.4.32 for a marker symbol nothing calls, so it fails to load
/// on Debian 12 / Ubuntu 22.04. When this process's libstdc++ lacks that version and the library the runtime
/// would load still requires it strongly, <see cref="Prepare"/> writes a copy with that one requirement
/// marked weak to a per-user cache folder, loads it (after the libtorch libraries next to the original) and
/// points TorchSharp's P/Invokes at it. The app's own files are never changed.
/// <para>
/// It runs by itself when LowRankOptim is loaded (a module initializer): the runtime loads LowRankOptim when it
/// compiles the first method that mentions one of its types, e.g. a <c>Main</c> that builds a model and then
/// calls <c>LowRank.GaLore</c>. Call <see cref="Prepare"/> first only when TorchSharp is used in a method that
/// runs before any method mentioning LowRankOptim is compiled.
/// </para>
/// <para>
/// Environment: <c>LOWRANKOPTIM_SKIP_GLIBCXX_FIX=1</c> turns it off; <c>LOWRANKOPTIM_NATIVE_CACHE</c> sets the
/// cache folder (default <c>$XDG_CACHE_HOME/lowrankoptim</c>, else <c>~/.cache/lowrankoptim</c>).
/// </para>
/// </summary>
public static class TorchSharpNative
{
    private const string Version = "GLIBCXX_3.4.32";
    private const string FileName = "libLibTorchSharp.so";
    private static readonly object Gate = new();
    private static NativeFixReport? _report;
    private static IntPtr _handle;

    /// <summary>The report of the fix, or null before it ran.</summary>
    public static NativeFixReport? Report => Volatile.Read(ref _report);

    /// <summary>
    /// Applies the fix if this process needs it, once; later calls return the first report. Never throws:
    /// a failure is reported as <see cref="NativeFixOutcome.Failed"/> (TorchSharp then reports its own load error).
    /// </summary>
    public static NativeFixReport Prepare()
    {
        lock (Gate)
        {
            if (_report is null)
            {
                NativeFixReport report;
                try { report = Apply(); }
                catch (Exception e) { report = new NativeFixReport(NativeFixOutcome.Failed, null, null, $"{e.GetType().Name}: {e.Message}"); }
                Volatile.Write(ref _report, report);
            }
            return _report;
        }
    }

    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries",
        Justification = "The fix must run before TorchSharp loads its native library, which user code may trigger before calling into LowRankOptim.")]
    [ModuleInitializer]
    internal static void OnLoad() => Prepare();

    private static NativeFixReport Apply()
    {
        if (!OperatingSystem.IsLinux()) return new(NativeFixOutcome.NotLinux, null, null, "not Linux");
        if (Environment.GetEnvironmentVariable("LOWRANKOPTIM_SKIP_GLIBCXX_FIX") is "1" or "true")
            return new(NativeFixOutcome.Disabled, null, null, "LOWRANKOPTIM_SKIP_GLIBCXX_FIX is set");
        var maps = LoadedLibraries();
        var stdcxx = maps.FirstOrDefault(p => Path.GetFileName(p).StartsWith("libstdc++.so", StringComparison.Ordinal))
                     ?? ElfVersionNeeds.FindSystemLibrary("libstdc++.so.6");
        if (stdcxx is not null && ElfVersionNeeds.Defines(stdcxx, Version))
            return new(NativeFixOutcome.NotNeeded, null, null, $"{stdcxx} defines {Version}");
        var library = FindLibrary();
        if (library is null)
            return new(NativeFixOutcome.LibraryNotFound, null, null, $"no {FileName} in the native search directories or next to TorchSharp.dll");
        if (maps.Any(p => Path.GetFileName(p) == FileName))
            return new(NativeFixOutcome.AlreadyLoaded, library, null, $"{FileName} was loaded before the fix could run; call TorchSharpNative.Prepare() before the first use of TorchSharp");
        var image = File.ReadAllBytes(library);
        var result = ElfVersionNeeds.MarkWeak(image, Version);
        if (result != WeakenResult.Patched)
            return new(NativeFixOutcome.AlreadyWeak, library, null, $"{library}: {Version} {result}");
        var copy = WriteCopy(image);
        var directory = Path.GetDirectoryName(library)!;
        // The copy lives elsewhere, so its $ORIGIN run path no longer finds libtorch: load what it needs from
        // beside the original first (each of those finds its own dependencies through its own $ORIGIN).
        foreach (var needed in ElfVersionNeeds.ReadNeeded(image))
        {
            var path = Path.Combine(directory, needed);
            if (File.Exists(path)) NativeLibrary.Load(path);
        }
        _handle = NativeLibrary.Load(copy);
        // P/Invokes of TorchSharp resolve to the copy directly; without the resolver (another one is set) the
        // runtime's last probe, the bare name, still finds the copy by its soname.
        try { NativeLibrary.SetDllImportResolver(typeof(TorchSharp.torch).Assembly, Resolve); }
        catch (InvalidOperationException) { }
        return new(NativeFixOutcome.Applied, library, copy, $"loaded {copy}: {library} with {Version} marked weak ({stdcxx ?? "libstdc++"} lacks it)");
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name is "LibTorchSharp" or "libLibTorchSharp" or FileName ? _handle : IntPtr.Zero;

    /// <summary>The directories the runtime probes for a P/Invoke library, in its order, then TorchSharp.dll's own.</summary>
    internal static IEnumerable<string> SearchDirectories()
    {
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string dirs)
            foreach (var d in dirs.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
                yield return d;
        var torch = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torch))
        {
            yield return torch;
            yield return Path.Combine(torch, "runtimes", RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64", "native");
        }
    }

    /// <summary>The <c>libLibTorchSharp.so</c> the runtime would load first, or null.</summary>
    internal static string? FindLibrary() =>
        SearchDirectories().Select(d => Path.Combine(d, FileName)).FirstOrDefault(File.Exists);

    /// <summary>Paths of the shared objects mapped into this process (/proc/self/maps).</summary>
    internal static List<string> LoadedLibraries()
    {
        var result = new List<string>();
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                var slash = line.IndexOf('/');
                if (slash < 0) continue;
                var path = line[slash..];
                if (path.Contains(".so", StringComparison.Ordinal) && !result.Contains(path)) result.Add(path);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return result;
    }

    /// <summary>
    /// Writes <paramref name="patched"/> to the cache as <c>{hash}/libLibTorchSharp.so</c> (content-addressed;
    /// an existing file is used only when its bytes hash to the same name) and returns its path.
    /// </summary>
    internal static string WriteCopy(byte[] patched)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(patched))[..16];
        Exception? last = null;
        foreach (var root in CacheRoots())
        {
            try
            {
                var dir = Path.Combine(root, "glibcxx-weak", hash);
                var path = Path.Combine(dir, FileName);
                if (File.Exists(path) && Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)))[..16] == hash) return path;
                CreatePrivateDirectory(dir);
                var temp = Path.Combine(dir, $"{FileName}.{Environment.ProcessId}.tmp");
                File.WriteAllBytes(temp, patched);
                File.Move(temp, path, overwrite: true); // atomic: concurrent processes write the same bytes
                return path;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                last = e;
            }
        }
        throw new IOException($"no writable cache folder for the patched {FileName} (set LOWRANKOPTIM_NATIVE_CACHE)", last);
    }

    private static IEnumerable<string> CacheRoots()
    {
        if (Environment.GetEnvironmentVariable("LOWRANKOPTIM_NATIVE_CACHE") is { Length: > 0 } explicitRoot)
        {
            yield return explicitRoot;
            yield break;
        }
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) yield return Path.Combine(xdg, "lowrankoptim");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (!string.IsNullOrEmpty(home)) yield return Path.Combine(home, ".cache", "lowrankoptim");
        yield return Path.Combine(Path.GetTempPath(), $"lowrankoptim-{Environment.UserName}");
    }

    private static void CreatePrivateDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
        else Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }
}
