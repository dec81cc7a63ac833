namespace LowRankOptim.Kernels;

/// <summary>
/// The module image of an embedded CUDA source for a device: from NVRTC at run time (PTX for the newest
/// architecture NVRTC knows that the device runs), or, when <see cref="EnvironmentVariable"/> names a folder,
/// from images compiled ahead of time (a machine with the driver's libcuda but no NVRTC, such as the GPU test
/// machine): <c>&lt;source&gt;.sm_&lt;arch&gt;.cubin</c> for the device's exact architecture, else the
/// <c>&lt;source&gt;.compute_&lt;arch&gt;.ptx</c> of the newest architecture not above the device's (the driver
/// compiles PTX itself).
/// </summary>
internal static class KernelImages
{
    /// <summary>The environment variable naming the folder of ahead-of-time images.</summary>
    public const string EnvironmentVariable = "LOWRANKOPTIM_CUDA_IMAGES";

    /// <summary>The folder of ahead-of-time images, or null when kernels are compiled with NVRTC.</summary>
    public static string? Folder => Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } folder ? folder : null;

    /// <summary>The image of <paramref name="source"/> for a device of architecture <paramref name="deviceArch"/> (e.g. 90), and what it is.</summary>
    /// <exception cref="CudaUnavailableException">An image folder is set but holds no image this device can load.</exception>
    public static (byte[] Image, string Description) For(string source, int deviceArch)
    {
        if (Folder is not { } folder)
        {
            var arch = CudaDriver.TargetArchitecture(deviceArch);
            return (Nvrtc.Ptx(source, arch), $"NVRTC PTX compute_{arch}");
        }
        var name = Path.GetFileNameWithoutExtension(source);
        var cubin = Path.Combine(folder, $"{name}.sm_{deviceArch}.cubin");
        if (File.Exists(cubin)) return (File.ReadAllBytes(cubin), $"CUBIN {Path.GetFileName(cubin)}");
        var ptx = Directory.Exists(folder)
            ? Directory.GetFiles(folder, $"{name}.compute_*.ptx")
                .Select(f => (File: f, Arch: int.TryParse(Path.GetFileNameWithoutExtension(f)[(name.Length + ".compute_".Length)..], out var a) ? a : int.MaxValue))
                .Where(p => p.Arch <= deviceArch).OrderByDescending(p => p.Arch).FirstOrDefault()
            : default;
        if (ptx.File is null)
            throw new CudaUnavailableException($"{EnvironmentVariable}={folder} holds neither {name}.sm_{deviceArch}.cubin nor a {name}.compute_N.ptx with N <= {deviceArch}.");
        // cuModuleLoadData reads PTX as a NUL-terminated string.
        return ([.. File.ReadAllBytes(ptx.File), 0], $"PTX {Path.GetFileName(ptx.File)} (driver JIT)");
    }

    /// <summary>Writes every embedded source's CUBIN for sm_<paramref name="arch"/> and PTX for compute_<paramref name="arch"/> into <paramref name="folder"/> (with NVRTC).</summary>
    public static IReadOnlyList<string> Write(string folder, int arch)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        foreach (var source in KernelSources.Names)
        {
            var name = Path.GetFileNameWithoutExtension(source);
            var cubin = Path.Combine(folder, $"{name}.sm_{arch}.cubin");
            File.WriteAllBytes(cubin, Nvrtc.Cubin(source, arch));
            var ptx = Path.Combine(folder, $"{name}.compute_{arch}.ptx");
            File.WriteAllBytes(ptx, Nvrtc.Ptx(source, arch).TakeWhile(b => b != 0).ToArray());
            written.Add(cubin);
            written.Add(ptx);
        }
        return written;
    }
}
