using System.Runtime.InteropServices;
using System.Text;
using LowRankOptim.Kernels;
using LowRankOptim.Kernels.GpuHarness;

// The GPU harness: every embedded CUDA kernel, compiled with NVRTC and launched with the driver API on
// cuMemAlloc buffers, against a CPU reference written here in plain C#. Exit codes: 0 all passed,
// 1 a check failed, 2 no usable GPU (no driver, no device, no NVRTC), 3 usage.
// A GPU machine without NVRTC runs images compiled here ahead of time: --write-images DIR [--arch N] on a machine
// with NVRTC, then --images DIR on the GPU machine (docs/kernels.md).
int deviceOrdinal = 0, arch = 90;
string? imagesOut = null;
var time = false;
for (var i = 0; i < args.Length; i++)
{
    if (args[i] == "--device" && i + 1 < args.Length && int.TryParse(args[i + 1], out deviceOrdinal) && deviceOrdinal >= 0) { i++; continue; }
    if (args[i] == "--arch" && i + 1 < args.Length && int.TryParse(args[i + 1], out arch) && arch > 0) { i++; continue; }
    if (args[i] == "--write-images" && i + 1 < args.Length) { imagesOut = args[++i]; continue; }
    if (args[i] == "--images" && i + 1 < args.Length) { Environment.SetEnvironmentVariable(KernelImages.EnvironmentVariable, Path.GetFullPath(args[++i])); continue; }
    if (args[i] == "--time") { time = true; continue; }
    if (args[i] is "-h" or "--help")
    {
        Console.WriteLine("lowrankoptim-gpu-harness [--device N] [--images DIR] [--time]: checks every embedded CUDA kernel of LowRankOptim.Kernels against a CPU reference");
        Console.WriteLine("  (--images: load ahead-of-time CUBIN/PTX images instead of compiling with NVRTC; --time: also time each kernel family).");
        Console.WriteLine("lowrankoptim-gpu-harness --write-images DIR [--arch N]: compile every kernel to sm_N CUBIN and compute_N PTX with NVRTC (no GPU needed; N = 90 by default).");
        Console.WriteLine("Exit codes: 0 all passed, 1 a check failed, 2 no usable CUDA driver/device/NVRTC, 3 usage.");
        return 0;
    }
    Console.Error.WriteLine($"unknown argument '{args[i]}' (use --device N, --images DIR, --time, --write-images DIR, --arch N).");
    return 3;
}

if (imagesOut is not null)
{
    foreach (var file in KernelImages.Write(imagesOut, arch)) Console.WriteLine($"wrote {file} ({new FileInfo(file).Length} bytes)");
    return 0;
}

Console.WriteLine($"LowRankOptim GPU harness — {RuntimeInformation.OSDescription}; {RuntimeInformation.ProcessArchitecture}; .NET {Environment.Version}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine($"Kernels: {string.Join(", ", KernelLaunches.All.Select(k => $"{k.Source}:{k.Function}"))}");

var problems = new List<string>();
string? nvrtc = null;
if (KernelImages.Folder is { } imageFolder)
{
    nvrtc = "not used";
    Console.WriteLine($"Kernel images: ahead of time, from {imageFolder}: {string.Join(", ", Directory.GetFiles(imageFolder).Select(Path.GetFileName))}");
}
else try
{
    var (major, minor) = Nvrtc.Version;
    nvrtc = $"{major}.{minor}";
    Console.WriteLine($"NVRTC: loaded, version {nvrtc}; real architectures: {string.Join(' ', Nvrtc.SupportedArchitectures().Select(a => $"sm_{a}"))}");
    // Preflight that needs no GPU: every source compiles to PTX with all its entry points.
    foreach (var source in KernelSources.Names)
    {
        var ptx = Encoding.ASCII.GetString(Nvrtc.CompileText(KernelSources.Text(source), source, 80));
        var missing = KernelLaunches.All.Where(k => k.Source == source && !ptx.Contains($".entry {k.Function}", StringComparison.Ordinal)).Select(k => k.Function).ToList();
        Console.WriteLine($"  {source}: compiles to compute_80 PTX{(missing.Count == 0 ? " with every entry point" : $", MISSING entry points {string.Join(", ", missing)}")}");
        if (missing.Count > 0) problems.Add($"{source} lacks {string.Join(", ", missing)}");
    }
}
catch (CudaUnavailableException e) { problems.Add($"NVRTC: {e.Message}"); Console.WriteLine($"NVRTC: NOT AVAILABLE — {e.Message}"); }
catch (CudaCompileException e) { problems.Add($"NVRTC compile: {e.Message}"); Console.WriteLine($"NVRTC: COMPILE FAILED — {e.Message}"); }

int deviceCount = 0;
if (CudaLibraries.DriverProblem is string driverProblem)
{
    Console.WriteLine($"CUDA driver: NOT AVAILABLE — {driverProblem}");
    problems.Add("no CUDA driver (libcuda.so.1 from the NVIDIA driver): " + driverProblem);
}
else
{
    try
    {
        deviceCount = CudaDriver.DeviceCount();
        Console.WriteLine($"CUDA driver: loaded, CUDA {CudaDriver.DriverVersion() / 1000}.{CudaDriver.DriverVersion() % 1000 / 10}; {deviceCount} device(s)");
        if (deviceCount == 0) problems.Add("the CUDA driver reports no device");
        else if (deviceOrdinal >= deviceCount) problems.Add($"--device {deviceOrdinal} but the driver reports {deviceCount} device(s)");
    }
    catch (CudaUnavailableException e)
    {
        Console.WriteLine($"CUDA driver: loaded but unusable — {e.Message}");
        problems.Add("the CUDA driver cannot be initialized: " + e.Message);
    }
}

if (problems.Count > 0 || nvrtc is null || deviceCount == 0)
{
    Console.WriteLine();
    Console.WriteLine("RESULT: NO GPU CHECK RAN — no usable CUDA device:");
    foreach (var p in problems) Console.WriteLine($"  - {p}");
    return 2;
}

CudaDriver.UseDevice(deviceOrdinal);
var deviceArch = CudaDriver.Architecture(deviceOrdinal);
Console.WriteLine($"Device {deviceOrdinal}: {CudaDriver.DeviceName(deviceOrdinal)}, sm_{deviceArch}; " +
    string.Join(", ", KernelSources.Names.Select(source => $"{source}: {KernelImages.For(source, deviceArch).Description}")));
Console.WriteLine();

var checks = new List<Check>();
try
{
    checks.AddRange(Checks.Adam(deviceOrdinal));
    checks.AddRange(Checks.Reductions(deviceOrdinal));
    checks.AddRange(Checks.Smmf(deviceOrdinal));
    checks.AddRange(QuantizedChecks.All(deviceOrdinal));
}
catch (Exception e) when (e is CudaUnavailableException or CudaCompileException)
{
    Console.WriteLine($"RESULT: FAILED — a CUDA call failed: {e.Message}");
    return 1;
}

Console.WriteLine("| kernel | case | elements | max abs error | max ulp | allowed ulp | result |");
Console.WriteLine("|---|---|---:|---:|---:|---:|---|");
foreach (var c in checks)
    Console.WriteLine($"| {c.Kernel} | {c.Case} | {c.Elements} | {c.MaxAbsError:G3} | {c.MaxUlp} | {c.AllowedUlp} | {(c.Passed ? "pass" : "FAIL")} |");
var failed = checks.Count(c => !c.Passed);
if (time)
{
    Console.WriteLine();
    Console.WriteLine("| kernel | shape | ms per call (median) | GB/s (bytes as the kernel moves them) |");
    Console.WriteLine("|---|---|---:|---:|");
    foreach (var t in Timings.All(deviceOrdinal))
        Console.WriteLine($"| {t.Kernel} | {t.Shape} | {t.MedianMs:F3} | {t.GBps:F0} |");
}
Console.WriteLine();
Console.WriteLine(failed == 0
    ? $"RESULT: PASSED — {checks.Count} checks, every embedded kernel ({KernelLaunches.All.Count}) on {CudaDriver.DeviceName(deviceOrdinal)}."
    : $"RESULT: FAILED — {failed} of {checks.Count} checks.");
return failed == 0 ? 0 : 1;
