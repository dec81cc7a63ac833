using System.Runtime.InteropServices;
using System.Text;
using LowRankOptim.Kernels;
using LowRankOptim.Kernels.GpuHarness;

// The GPU harness: every embedded CUDA kernel, compiled with NVRTC and launched with the driver API on
// cuMemAlloc buffers, against a CPU reference written here in plain C#. Exit codes: 0 all passed,
// 1 a check failed, 2 no usable GPU (no driver, no device, no NVRTC), 3 usage.
int deviceOrdinal = 0;
for (var i = 0; i < args.Length; i++)
{
    if (args[i] == "--device" && i + 1 < args.Length && int.TryParse(args[i + 1], out deviceOrdinal) && deviceOrdinal >= 0) { i++; continue; }
    if (args[i] is "-h" or "--help")
    {
        Console.WriteLine("lowrankoptim-gpu-harness [--device N]: checks every embedded CUDA kernel of LowRankOptim.Kernels against a CPU reference.");
        Console.WriteLine("Exit codes: 0 all passed, 1 a check failed, 2 no usable CUDA driver/device/NVRTC, 3 usage.");
        return 0;
    }
    Console.Error.WriteLine($"unknown argument '{args[i]}' (use --device N).");
    return 3;
}

Console.WriteLine($"LowRankOptim GPU harness — {RuntimeInformation.OSDescription}; {RuntimeInformation.ProcessArchitecture}; .NET {Environment.Version}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine($"Kernels: {string.Join(", ", KernelLaunches.All.Select(k => $"{k.Source}:{k.Function}"))}");

var problems = new List<string>();
string? nvrtc = null;
try
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
var arch = CudaDriver.Architecture(deviceOrdinal);
Console.WriteLine($"Device {deviceOrdinal}: {CudaDriver.DeviceName(deviceOrdinal)}, sm_{arch}; kernels compiled for compute_{CudaDriver.TargetArchitecture(arch)}");
Console.WriteLine();

var checks = new List<Check>();
try
{
    checks.AddRange(Checks.Adam(deviceOrdinal));
    checks.AddRange(Checks.Reductions(deviceOrdinal));
    checks.AddRange(Checks.Smmf(deviceOrdinal));
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
Console.WriteLine();
Console.WriteLine(failed == 0
    ? $"RESULT: PASSED — {checks.Count} checks, every embedded kernel ({KernelLaunches.All.Count}) on {CudaDriver.DeviceName(deviceOrdinal)}."
    : $"RESULT: FAILED — {failed} of {checks.Count} checks.");
return failed == 0 ? 0 : 1;
