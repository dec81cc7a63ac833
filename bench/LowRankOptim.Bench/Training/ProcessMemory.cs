namespace LowRankOptim.Bench.Training;

/// <summary>Peak resident memory of this process (Linux VmHWM), resettable between runs.</summary>
public static class ProcessMemory
{
    /// <summary>Resets the peak to the current resident size (writes 5 to /proc/self/clear_refs); a no-op elsewhere.</summary>
    public static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Peak resident bytes since the last reset (VmHWM), or the process's peak working set elsewhere.</summary>
    public static long PeakRss()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
        {
            var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("VmHWM:"));
            if (line is not null) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        return Environment.WorkingSet;
    }
}
