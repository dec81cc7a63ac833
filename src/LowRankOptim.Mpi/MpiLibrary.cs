using System.Reflection;
using System.Runtime.InteropServices;

namespace LowRankOptim.Mpi;

/// <summary>
/// Where MPI comes from. MPI.NET 1.4.0 binds <c>msmpi.dll</c> (Microsoft MPI) only. MS-MPI's ABI is MPICH's (the
/// same integer handles — MPI_COMM_WORLD = 0x44000000, MPI_FLOAT = 0x4c00040a, MPI_SUM = 0x58000003 — and the same
/// status layout), so on Linux a DllImport resolver maps that name to MPICH's <c>libmpich.so.12</c> (no symlinks).
/// Open MPI's ABI differs (its handles are pointers to global objects), so Open MPI cannot be used this way.
/// </summary>
public static class MpiLibrary
{
    private static readonly string[] LinuxNames = ["libmpich.so.12", "libmpi.so.12"];
    private static readonly object Gate = new();
    private static bool _installed;
    private static IntPtr _handle;
    private static string? _loadError;

    /// <summary>The library the resolver loaded (null before <see cref="Load"/> or when none was found).</summary>
    public static string? LoadedName { get; private set; }

    /// <summary>
    /// Installs the resolver (once) and loads the MPI library; returns null when MPI can be used, or why not (no MPICH
    /// installed, an Open MPI launch).
    /// </summary>
    public static string? Load()
    {
        lock (Gate)
        {
            if (!_installed)
            {
                _installed = true;
                NativeLibrary.SetDllImportResolver(typeof(MPI.Unsafe).Assembly, Resolve);
                _handle = Open(out _loadError);
            }
            if (System.Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null)
                return "this process was started by Open MPI's mpiexec; LowRankOptim.Mpi needs an MPICH-ABI MPI (MPICH on Linux, MS-MPI on Windows): start it with mpiexec.mpich";
            return _handle == IntPtr.Zero ? _loadError : null;
        }
    }

    private static IntPtr Open(out string? error)
    {
        error = null;
        if (OperatingSystem.IsWindows())
        {
            if (NativeLibrary.TryLoad("msmpi.dll", out var windows)) { LoadedName = "msmpi.dll"; return windows; }
            error = "msmpi.dll (Microsoft MPI) could not be loaded; install Microsoft MPI";
            return IntPtr.Zero;
        }
        foreach (var name in LinuxNames)
        {
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                LoadedName = name;
                return handle;
            }
        }
        error = $"MPICH's shared library ({string.Join(" or ", LinuxNames)}) was not found; install it with 'apt-get install mpich'";
        return IntPtr.Zero;
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name.StartsWith("msmpi", StringComparison.OrdinalIgnoreCase) ? _handle : IntPtr.Zero;
}
