using System.Runtime.InteropServices;

namespace LowRankOptim.Bench.Support;

/// <summary>The facts a recorded measurement needs: machine, versions, date.</summary>
public static class MachineInfo
{
    public static string Describe()
    {
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim()
            : null;
        return $"{RuntimeInformation.OSDescription}; {cpu ?? RuntimeInformation.ProcessArchitecture.ToString()}; " +
               $"{Environment.ProcessorCount} cores; torch threads {TorchSharp.torch.get_num_threads()}; {NativeEnvironment.Describe()}; " +
               $".NET {Environment.Version}; TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version}; " +
               $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC";
    }
}
