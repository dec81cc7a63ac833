using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace LowRankOptim.Kernels;

/// <summary>
/// The CUDA driver API through function pointers resolved from <see cref="CudaLibraries.Driver"/>: the
/// device's primary context (the one libtorch's runtime API uses, so TorchSharp's device pointers are valid
/// in it), module loading from PTX, kernel launches on the default stream (TorchSharp 0.107 runs all its
/// work there, so launches are ordered with TorchSharp ops), and the few memory calls the GPU harness needs.
/// </summary>
internal static unsafe class CudaDriver
{
    private const int ComputeCapabilityMajor = 75, ComputeCapabilityMinor = 76;
    private static readonly Lazy<int> Initialized = new(() => { Check(Fn<uint>("cuInit")(0), "cuInit"); return 0; });
    private static readonly ConcurrentDictionary<int, IntPtr> Contexts = new();
    private static readonly ConcurrentDictionary<(int Device, string Source), IntPtr> Modules = new();
    private static readonly ConcurrentDictionary<(IntPtr Module, string Name), IntPtr> Functions = new();

    private static delegate* unmanaged<T1, int> Fn<T1>(string name) => (delegate* unmanaged<T1, int>)CudaLibraries.Export(CudaLibraries.Driver, name);

    /// <summary>Initializes the driver (once) and returns the number of CUDA devices.</summary>
    /// <exception cref="CudaUnavailableException">The driver cannot be loaded or initialized.</exception>
    public static int DeviceCount()
    {
        _ = Initialized.Value;
        int count;
        Check(Fn<IntPtr>("cuDeviceGetCount")((IntPtr)(&count)), "cuDeviceGetCount");
        return count;
    }

    /// <summary>The compute capability of device <paramref name="ordinal"/> as major·10 + minor (e.g. 90).</summary>
    public static int Architecture(int ordinal)
    {
        var device = Device(ordinal);
        int major, minor;
        var attribute = (delegate* unmanaged<int*, int, int, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuDeviceGetAttribute");
        Check(attribute(&major, ComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        Check(attribute(&minor, ComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        return major * 10 + minor;
    }

    /// <summary>The name of device <paramref name="ordinal"/> (cuDeviceGetName).</summary>
    public static string DeviceName(int ordinal)
    {
        var device = Device(ordinal);
        var buffer = stackalloc byte[256];
        var name = (delegate* unmanaged<byte*, int, int, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuDeviceGetName");
        Check(name(buffer, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringUTF8((IntPtr)buffer) ?? "";
    }

    /// <summary>The driver's CUDA version as major·1000 + minor·10 (cuDriverGetVersion; e.g. 12040).</summary>
    public static int DriverVersion()
    {
        int version;
        Check(Fn<IntPtr>("cuDriverGetVersion")((IntPtr)(&version)), "cuDriverGetVersion");
        return version;
    }

    /// <summary>Makes device <paramref name="ordinal"/>'s primary context current on this thread (retained once per process).</summary>
    public static void UseDevice(int ordinal)
    {
        var context = Contexts.GetOrAdd(ordinal, o =>
        {
            IntPtr ctx;
            var retain = (delegate* unmanaged<IntPtr*, int, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuDevicePrimaryCtxRetain");
            Check(retain(&ctx, Device(o)), "cuDevicePrimaryCtxRetain");
            return ctx;
        });
        Check(Fn<IntPtr>("cuCtxSetCurrent")(context), "cuCtxSetCurrent");
    }

    /// <summary>
    /// The function <paramref name="kernel"/> of the embedded source <paramref name="source"/> on device
    /// <paramref name="ordinal"/>: its image (<see cref="KernelImages"/>: NVRTC PTX, or an ahead-of-time CUBIN or
    /// PTX) loaded with cuModuleLoadData, once per device and source.
    /// </summary>
    public static IntPtr Function(int ordinal, string source, string kernel)
    {
        UseDevice(ordinal);
        var module = Modules.GetOrAdd((ordinal, source), key =>
        {
            var (bytes, description) = KernelImages.For(key.Source, Architecture(key.Device));
            IntPtr m;
            var load = (delegate* unmanaged<IntPtr*, byte*, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuModuleLoadData");
            fixed (byte* image = bytes) Check(load(&m, image), $"cuModuleLoadData({key.Source}, {description})");
            return m;
        });
        return Functions.GetOrAdd((module, kernel), key =>
        {
            IntPtr f;
            var get = (delegate* unmanaged<IntPtr*, IntPtr, IntPtr, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuModuleGetFunction");
            var name = CudaLibraries.Utf8(key.Name);
            try { Check(get(&f, key.Module, name), $"cuModuleGetFunction({key.Name})"); }
            finally { Marshal.FreeHGlobal(name); }
            return f;
        });
    }

    /// <summary>The newest architecture NVRTC supports that is not newer than the device's.</summary>
    public static int TargetArchitecture(int device)
    {
        var supported = Nvrtc.SupportedArchitectures();
        if (supported.Length == 0) return device;
        var fitting = supported.Where(a => a <= device).ToArray();
        return fitting.Length > 0 ? fitting[^1] : supported[0];
    }

    /// <summary>Launches <paramref name="function"/> on the default stream; <paramref name="arguments"/> point at each argument's value.</summary>
    public static void Launch(IntPtr function, uint grid, uint block, ReadOnlySpan<IntPtr> arguments) => Launch(function, grid, 1, block, arguments);

    /// <summary>Launches <paramref name="function"/> on a <paramref name="gridX"/>×<paramref name="gridY"/> grid on the default stream.</summary>
    public static void Launch(IntPtr function, uint gridX, uint gridY, uint block, ReadOnlySpan<IntPtr> arguments)
    {
        var launch = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, IntPtr*, IntPtr*, int>)
            CudaLibraries.Export(CudaLibraries.Driver, "cuLaunchKernel");
        fixed (IntPtr* args = arguments)
            Check(launch(function, gridX, gridY, 1, block, 1, 1, 0, IntPtr.Zero, args, null), "cuLaunchKernel");
    }

    /// <summary>Waits for the current context's work (the harness; the library never blocks).</summary>
    public static void Synchronize() => Check(((delegate* unmanaged<int>)CudaLibraries.Export(CudaLibraries.Driver, "cuCtxSynchronize"))(), "cuCtxSynchronize");

    /// <summary>cuMemAlloc.</summary>
    public static ulong Allocate(long bytes)
    {
        ulong p;
        var alloc = (delegate* unmanaged<ulong*, nuint, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuMemAlloc_v2");
        Check(alloc(&p, (nuint)Math.Max(bytes, 1)), "cuMemAlloc");
        return p;
    }

    /// <summary>cuMemFree.</summary>
    public static void Free(ulong pointer) => Check(((delegate* unmanaged<ulong, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuMemFree_v2"))(pointer), "cuMemFree");

    /// <summary>cuMemcpyHtoD.</summary>
    public static void CopyToDevice<T>(ulong destination, ReadOnlySpan<T> source) where T : unmanaged
    {
        if (source.IsEmpty) return;
        var copy = (delegate* unmanaged<ulong, void*, nuint, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuMemcpyHtoD_v2");
        fixed (T* p = source) Check(copy(destination, p, (nuint)(source.Length * sizeof(T))), "cuMemcpyHtoD");
    }

    /// <summary>cuMemcpyDtoH.</summary>
    public static void CopyToHost<T>(Span<T> destination, ulong source) where T : unmanaged
    {
        if (destination.IsEmpty) return;
        var copy = (delegate* unmanaged<void*, ulong, nuint, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuMemcpyDtoH_v2");
        fixed (T* p = destination) Check(copy(p, source, (nuint)(destination.Length * sizeof(T))), "cuMemcpyDtoH");
    }

    private static int Device(int ordinal)
    {
        _ = Initialized.Value;
        int device;
        var get = (delegate* unmanaged<int*, int, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuDeviceGet");
        Check(get(&device, ordinal), "cuDeviceGet");
        return device;
    }

    private static void Check(int code, string call)
    {
        if (code == 0) return;
        IntPtr text = IntPtr.Zero;
        var describe = (delegate* unmanaged<int, IntPtr*, int>)CudaLibraries.Export(CudaLibraries.Driver, "cuGetErrorString");
        describe(code, &text);
        throw new CudaUnavailableException($"{call} failed: {(text == IntPtr.Zero ? "unknown error" : Marshal.PtrToStringUTF8(text))} (CUresult {code}).");
    }
}
