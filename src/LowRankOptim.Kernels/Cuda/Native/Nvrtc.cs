using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace LowRankOptim.Kernels;

/// <summary>A kernel source failed to compile; <see cref="Exception.Message"/> holds NVRTC's log.</summary>
/// <param name="message">What failed to compile, with NVRTC's log.</param>
public sealed class CudaCompileException(string message) : Exception(message);

/// <summary>The CUDA C kernel sources embedded in the assembly (Cuda/Sources/*.cu).</summary>
internal static class KernelSources
{
    private const string Prefix = "LowRankOptim.Kernels.Cuda.Sources.";

    /// <summary>The file names of every embedded source, e.g. "adam.cu".</summary>
    public static IReadOnlyList<string> Names { get; } = typeof(KernelSources).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The text of the embedded source <paramref name="name"/>.</summary>
    public static string Text(string name)
    {
        using var stream = typeof(KernelSources).Assembly.GetManifestResourceStream(Prefix + name)
            ?? throw new InvalidOperationException($"no embedded kernel source '{name}'.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}

/// <summary>
/// NVRTC through function pointers resolved from <see cref="CudaLibraries.Nvrtc"/>: compiles a kernel source
/// to PTX for a virtual architecture (compute_XY, what the launch path loads) or to a CUBIN for a real one
/// (sm_XY, which also runs the assembler; the compile test uses it). PTX is cached per process and on disk
/// under <c>$XDG_CACHE_HOME/LowRankOptim/kernels</c> (or <c>~/.cache/...</c>), keyed by a SHA-256 of the
/// source, the options and the NVRTC version, and by the architecture.
/// </summary>
internal static unsafe class Nvrtc
{
    private static readonly ConcurrentDictionary<(string Source, int Arch), byte[]> PtxCache = new();

    /// <summary>NVRTC's version (major, minor).</summary>
    public static (int Major, int Minor) Version
    {
        get
        {
            var f = (delegate* unmanaged<int*, int*, int>)CudaLibraries.Export(CudaLibraries.Nvrtc, "nvrtcVersion");
            int major, minor;
            Check(f(&major, &minor), "nvrtcVersion");
            return (major, minor);
        }
    }

    /// <summary>The real architectures this NVRTC can target (e.g. 80 for sm_80), ascending.</summary>
    public static int[] SupportedArchitectures()
    {
        if (!NativeLibrary.TryGetExport(CudaLibraries.Nvrtc, "nvrtcGetNumSupportedArchs", out var countFn)) return [];
        int count;
        Check(((delegate* unmanaged<int*, int>)countFn)(&count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* p = archs)
            Check(((delegate* unmanaged<int*, int>)CudaLibraries.Export(CudaLibraries.Nvrtc, "nvrtcGetSupportedArchs"))(p), "nvrtcGetSupportedArchs");
        Array.Sort(archs);
        return archs;
    }

    /// <summary>The options every kernel is compiled with (besides the architecture).</summary>
    private static readonly string[] CommonOptions = ["--std=c++14", "--fmad=false", "-default-device"];

    /// <summary>PTX of <paramref name="sourceName"/> for compute_<paramref name="arch"/>, from the caches or NVRTC.</summary>
    /// <exception cref="CudaCompileException">The source does not compile.</exception>
    public static byte[] Ptx(string sourceName, int arch) => PtxCache.GetOrAdd((sourceName, arch), key =>
    {
        var source = KernelSources.Text(key.Source);
        var (major, minor) = Version;
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{source}\n{string.Join(' ', CommonOptions)}\nnvrtc {major}.{minor}")))[..32];
        var file = Path.Combine(CacheFolder(), $"{Path.GetFileNameWithoutExtension(key.Source)}-{hash}-compute_{key.Arch}.ptx");
        try
        {
            if (File.Exists(file)) return File.ReadAllBytes(file);
        }
        catch (IOException) { } // an unreadable cache entry is rebuilt
        var ptx = Compile(source, key.Source, $"--gpu-architecture=compute_{key.Arch}", cubin: false);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var temporary = file + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(temporary, ptx);
            File.Move(temporary, file, overwrite: true);
        }
        catch (IOException) { } // the disk cache is an optimization
        catch (UnauthorizedAccessException) { }
        return ptx;
    });

    /// <summary>Compiles <paramref name="sourceName"/> to a CUBIN for sm_<paramref name="arch"/> (no caching).</summary>
    /// <exception cref="CudaCompileException">The source does not compile or assemble.</exception>
    public static byte[] Cubin(string sourceName, int arch) =>
        Compile(KernelSources.Text(sourceName), sourceName, $"--gpu-architecture=sm_{arch}", cubin: true);

    /// <summary>Compiles the CUDA C <paramref name="source"/> to PTX for compute_<paramref name="arch"/> (no caching; tests).</summary>
    public static byte[] CompileText(string source, string name, int arch) => Compile(source, name, $"--gpu-architecture=compute_{arch}", cubin: false);

    /// <summary>The folder of the on-disk PTX cache.</summary>
    public static string CacheFolder()
    {
        var root = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrWhiteSpace(root)) root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "LowRankOptim", "kernels");
    }

    private static byte[] Compile(string source, string name, string archOption, bool cubin)
    {
        var lib = CudaLibraries.Nvrtc;
        var create = (delegate* unmanaged<IntPtr*, IntPtr, IntPtr, int, IntPtr, IntPtr, int>)CudaLibraries.Export(lib, "nvrtcCreateProgram");
        var compile = (delegate* unmanaged<IntPtr, int, IntPtr*, int>)CudaLibraries.Export(lib, "nvrtcCompileProgram");
        var destroy = (delegate* unmanaged<IntPtr*, int>)CudaLibraries.Export(lib, "nvrtcDestroyProgram");
        var logSize = (delegate* unmanaged<IntPtr, nuint*, int>)CudaLibraries.Export(lib, "nvrtcGetProgramLogSize");
        var getLog = (delegate* unmanaged<IntPtr, byte*, int>)CudaLibraries.Export(lib, "nvrtcGetProgramLog");
        var outSize = (delegate* unmanaged<IntPtr, nuint*, int>)CudaLibraries.Export(lib, cubin ? "nvrtcGetCUBINSize" : "nvrtcGetPTXSize");
        var getOut = (delegate* unmanaged<IntPtr, byte*, int>)CudaLibraries.Export(lib, cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX");

        var options = CommonOptions.Append(archOption).ToArray();
        var natives = new List<IntPtr>();
        IntPtr program = IntPtr.Zero;
        try
        {
            var src = CudaLibraries.Utf8(source); natives.Add(src);
            var srcName = CudaLibraries.Utf8(name); natives.Add(srcName);
            Check(create(&program, src, srcName, 0, IntPtr.Zero, IntPtr.Zero), "nvrtcCreateProgram");
            var optionPointers = new IntPtr[options.Length];
            for (var i = 0; i < options.Length; i++) natives.Add(optionPointers[i] = CudaLibraries.Utf8(options[i]));
            int result;
            fixed (IntPtr* opts = optionPointers) result = compile(program, options.Length, opts);
            if (result != 0)
            {
                nuint size;
                Check(logSize(program, &size), "nvrtcGetProgramLogSize");
                var log = new byte[(int)size];
                fixed (byte* p = log) Check(getLog(program, p), "nvrtcGetProgramLog");
                throw new CudaCompileException($"NVRTC could not compile {name} with {string.Join(' ', options)} ({ErrorString(result)}):\n{Encoding.UTF8.GetString(log).TrimEnd('\0')}");
            }
            nuint length;
            Check(outSize(program, &length), cubin ? "nvrtcGetCUBINSize" : "nvrtcGetPTXSize");
            var output = new byte[(int)length];
            fixed (byte* p = output) Check(getOut(program, p), cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX");
            return output;
        }
        finally
        {
            if (program != IntPtr.Zero) destroy(&program);
            foreach (var p in natives) Marshal.FreeHGlobal(p);
        }
    }

    private static string ErrorString(int code)
    {
        var f = (delegate* unmanaged<int, IntPtr>)CudaLibraries.Export(CudaLibraries.Nvrtc, "nvrtcGetErrorString");
        return Marshal.PtrToStringUTF8(f(code)) ?? $"error {code}";
    }

    private static void Check(int code, string call)
    {
        if (code != 0) throw new CudaCompileException($"{call} failed: {ErrorString(code)} ({code}).");
    }
}
