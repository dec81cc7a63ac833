using System.Runtime.InteropServices;

namespace LowRankOptim.Bench.Support;

/// <summary>This process's resident memory as Linux reports it in /proc/self/status (null elsewhere).</summary>
public static partial class ProcessMemory
{
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    /// <summary>
    /// Returns the C heap's free pages to the kernel (glibc's <c>malloc_trim(0)</c>; Linux only, a no-op elsewhere or
    /// without glibc). libtorch's CPU tensors come from malloc, and glibc keeps freed blocks in its heaps, so without it
    /// the resident set holds memory that nothing uses.
    /// </summary>
    public static void ReturnFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { MallocTrim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    /// <summary>VmRSS: the resident set now, in bytes.</summary>
    public static long? Resident() => Field("VmRSS:");

    /// <summary>VmHWM: the largest resident set since the process started (the peak RSS), in bytes.</summary>
    public static long? PeakResident() => Field("VmHWM:");

    /// <summary>
    /// Resets <see cref="PeakResident"/> to the resident set now (writing 5 to /proc/self/clear_refs, Linux 4.0 and
    /// later); false where that is not possible.
    /// </summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// MemAvailable of /proc/meminfo (what the kernel estimates can be allocated without swapping), else what the GC
    /// reports as available to the process, in bytes.
    /// </summary>
    public static long Available() => Read("/proc/meminfo", "MemAvailable:") ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    private static long? Field(string name) => Read("/proc/self/status", name);

    private static long? Read(string path, string name)
    {
        if (!File.Exists(path)) return null;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal));
        return line is not null && long.TryParse(line[name.Length..].Trim().Split(' ')[0], out var kib) ? kib * 1024 : null;
    }
}
