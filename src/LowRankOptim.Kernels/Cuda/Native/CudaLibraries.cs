using System.Runtime.InteropServices;
using System.Text;

namespace LowRankOptim.Kernels;

/// <summary>Something the CUDA path needs is missing or failed; the message says what and where it looked.</summary>
/// <param name="message">What is missing or failed, and where it was looked for.</param>
/// <param name="inner">The failure that caused it (a load or driver error), if any.</param>
public sealed class CudaUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Finds NVRTC and the CUDA driver at run time with <see cref="NativeLibrary"/>, never by a fixed
/// <c>DllImport</c> name: the driver is <c>libcuda.so.1</c> (from the NVIDIA driver); NVRTC is looked for at
/// <c>LOWRANKOPTIM_NVRTC</c> (a file), in the CUDA toolkit (<c>CUDA_PATH</c>, <c>CUDA_HOME</c>,
/// <c>/usr/local/cuda</c>), by its usual sonames, and as the hash-suffixed <c>libnvrtc-*.so*</c> that libtorch's
/// CUDA packages ship next to their libraries (the application folder, its runtimes/linux-x64/native folder
/// and the <c>LD_LIBRARY_PATH</c> folders). Each is loaded once per process; a failure is remembered with its reason.
/// This file and the rest of Cuda/Native use no TorchSharp, so the GPU harness compiles them as they are.
/// </summary>
internal static class CudaLibraries
{
    private static readonly Lazy<(IntPtr Handle, string? Problem)> NvrtcHandle = new(() => LoadFirst(NvrtcCandidates(), "NVRTC"));
    private static readonly Lazy<(IntPtr Handle, string? Problem)> DriverHandle = new(() =>
        LoadFirst(OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"], "the CUDA driver (libcuda)"));

    /// <summary>The loaded NVRTC library.</summary>
    /// <exception cref="CudaUnavailableException">It could not be found.</exception>
    public static IntPtr Nvrtc => Handle(NvrtcHandle.Value);

    /// <summary>The loaded CUDA driver library.</summary>
    /// <exception cref="CudaUnavailableException">It could not be found.</exception>
    public static IntPtr Driver => Handle(DriverHandle.Value);

    /// <summary>Null when NVRTC loads, else why not.</summary>
    public static string? NvrtcProblem => NvrtcHandle.Value.Problem;

    /// <summary>Null when the driver loads, else why not.</summary>
    public static string? DriverProblem => DriverHandle.Value.Problem;

    /// <summary>The address of <paramref name="name"/> in <paramref name="library"/>.</summary>
    public static IntPtr Export(IntPtr library, string name) =>
        NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new CudaUnavailableException($"the loaded CUDA library has no export '{name}' (too old a version?).");

    private static IntPtr Handle((IntPtr Handle, string? Problem) loaded) =>
        loaded.Problem is null ? loaded.Handle : throw new CudaUnavailableException(loaded.Problem);

    private static (IntPtr, string?) LoadFirst(IEnumerable<string> candidates, string what)
    {
        var tried = new List<string>();
        foreach (var candidate in candidates.Distinct())
        {
            tried.Add(candidate);
            if (NativeLibrary.TryLoad(candidate, out var handle)) return (handle, null);
        }
        return (IntPtr.Zero, $"{what} could not be loaded; tried {string.Join(", ", tried)}.");
    }

    /// <summary>Where NVRTC may be, most specific first.</summary>
    internal static IEnumerable<string> NvrtcCandidates()
    {
        var explicitPath = Environment.GetEnvironmentVariable("LOWRANKOPTIM_NVRTC");
        if (!string.IsNullOrWhiteSpace(explicitPath)) yield return explicitPath;
        var windows = OperatingSystem.IsWindows();
        var roots = new[] { Environment.GetEnvironmentVariable("CUDA_PATH"), Environment.GetEnvironmentVariable("CUDA_HOME"), windows ? null : "/usr/local/cuda" };
        foreach (var root in roots.Where(r => !string.IsNullOrWhiteSpace(r)))
            foreach (var file in Glob(Path.Combine(root!, windows ? "bin" : "lib64"), windows ? "nvrtc64_*.dll" : "libnvrtc.so*"))
                yield return file;
        if (!windows)
            foreach (var soname in new[] { "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" })
                yield return soname;
        // libtorch's CUDA packages: hash-suffixed names next to libtorch_cuda.
        var folders = new List<string> { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") };
        folders.AddRange((Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries));
        foreach (var folder in folders)
            foreach (var file in Glob(folder, windows ? "nvrtc64_*.dll" : "libnvrtc-*.so*"))
                if (!file.Contains("builtins", StringComparison.Ordinal)) yield return file;
    }

    private static IEnumerable<string> Glob(string folder, string pattern)
    {
        try
        {
            return Directory.Exists(folder)
                ? Directory.GetFiles(folder, pattern).Where(f => !f.Contains("builtins", StringComparison.Ordinal)).OrderByDescending(f => f, StringComparer.Ordinal).ToArray()
                : [];
        }
        catch (IOException) { return []; }
        catch (UnauthorizedAccessException) { return []; }
    }

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="text"/> in native memory (free with <see cref="Marshal.FreeHGlobal"/>).</summary>
    public static IntPtr Utf8(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text + "\0");
        var p = Marshal.AllocHGlobal(bytes.Length);
        Marshal.Copy(bytes, 0, p, bytes.Length);
        return p;
    }
}
