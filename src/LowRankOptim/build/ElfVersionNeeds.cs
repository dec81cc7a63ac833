// Marks one symbol-version requirement of an ELF shared library as weak (VER_FLG_WEAK), so the dynamic
// loader accepts the library on a system whose libstdc++ lacks that version. Used by the MSBuild task
// below (compiled at build time by RoslynCodeTaskFactory) and, with LOWRANKOPTIM_NO_MSBUILD_TASK defined,
// by the library itself (the run-time fix, NativeLoading/TorchSharpNative.cs). See docs/native-loading.md
// for why and what exactly changes in the file.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace LowRankOptim.Build
{
    /// <summary>What <c>ElfVersionNeeds.MarkWeak</c> did to a file or image.</summary>
    internal enum WeakenResult
    {
        /// <summary>The requirement was strong and is now weak (one byte of the file changed).</summary>
        Patched,
        /// <summary>The requirement was already weak; the file is unchanged.</summary>
        AlreadyWeak,
        /// <summary>The file does not require that version; the file is unchanged.</summary>
        NotRequired,
    }

    /// <summary>Reads and edits the GNU symbol-versioning sections of little-endian ELF64 files.</summary>
    internal static class ElfVersionNeeds
    {
        private const uint ShtDynamic = 6;
        private const long DtNeeded = 1;
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        /// <summary>VER_FLG_WEAK from elf.h: a missing version is not an error.</summary>
        public const ushort VerFlagWeak = 0x2;

        /// <summary>One required version (an Elf64_Vernaux entry).</summary>
        public readonly struct Requirement
        {
            public Requirement(string file, string version, ushort flags, long flagsOffset)
            {
                File = file; Version = version; Flags = flags; FlagsOffset = flagsOffset;
            }
            /// <summary>The needed library, e.g. libstdc++.so.6.</summary>
            public string File { get; }
            /// <summary>The version name, e.g. GLIBCXX_3.4.32.</summary>
            public string Version { get; }
            /// <summary>vna_flags.</summary>
            public ushort Flags { get; }
            /// <summary>Absolute file offset of vna_flags.</summary>
            public long FlagsOffset { get; }
        }

        /// <summary>Lists the version requirements (.gnu.version_r) of an ELF file.</summary>
        public static List<Requirement> ReadRequirements(byte[] elf)
        {
            var result = new List<Requirement>();
            foreach (var section in Sections(elf))
            {
                if (section.Type != ShtGnuVerneed) continue;
                var strtab = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    ushort count = U16(elf, entry + 2);
                    string file = CString(elf, strtab.Offset + U32(elf, entry + 4));
                    long aux = entry + U32(elf, entry + 8);
                    for (int j = 0; j < count; j++)
                    {
                        ushort flags = U16(elf, aux + 4);
                        string name = CString(elf, strtab.Offset + U32(elf, aux + 8));
                        result.Add(new Requirement(file, name, flags, aux + 4));
                        aux += U32(elf, aux + 12);
                    }
                    uint next = U32(elf, entry + 12);
                    if (next == 0) break;
                    entry += next;
                }
            }
            return result;
        }

        /// <summary>Lists the version names an ELF library defines (.gnu.version_d).</summary>
        public static List<string> ReadDefinitions(byte[] elf)
        {
            var result = new List<string>();
            foreach (var section in Sections(elf))
            {
                if (section.Type != ShtGnuVerdef) continue;
                var strtab = SectionAt(elf, section.Link);
                long entry = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    long aux = entry + U32(elf, entry + 12);
                    result.Add(CString(elf, strtab.Offset + U32(elf, aux)));
                    uint next = U32(elf, entry + 16);
                    if (next == 0) break;
                    entry += next;
                }
            }
            return result;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on every requirement of <paramref name="version"/> in the file at
        /// <paramref name="path"/>. Idempotent; writes only the changed flag bytes.
        /// </summary>
        public static WeakenResult MarkWeak(string path, string version)
        {
            var elf = File.ReadAllBytes(path);
            var matches = ReadRequirements(elf).FindAll(r => r.Version == version);
            if (matches.Count == 0) return WeakenResult.NotRequired;
            var strong = matches.FindAll(r => (r.Flags & VerFlagWeak) == 0);
            if (strong.Count == 0) return WeakenResult.AlreadyWeak;
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                foreach (var r in strong)
                {
                    ushort flags = (ushort)(r.Flags | VerFlagWeak);
                    stream.Position = r.FlagsOffset;
                    stream.WriteByte((byte)(flags & 0xff));
                    stream.WriteByte((byte)(flags >> 8));
                }
            }
            return WeakenResult.Patched;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on every requirement of <paramref name="version"/> in the ELF image
        /// <paramref name="elf"/> (in memory; the caller writes it where it wants).
        /// </summary>
        public static WeakenResult MarkWeak(byte[] elf, string version)
        {
            var matches = ReadRequirements(elf).FindAll(r => r.Version == version);
            if (matches.Count == 0) return WeakenResult.NotRequired;
            var strong = matches.FindAll(r => (r.Flags & VerFlagWeak) == 0);
            if (strong.Count == 0) return WeakenResult.AlreadyWeak;
            foreach (var r in strong)
            {
                ushort flags = (ushort)(r.Flags | VerFlagWeak);
                elf[r.FlagsOffset] = (byte)(flags & 0xff);
                elf[r.FlagsOffset + 1] = (byte)(flags >> 8);
            }
            return WeakenResult.Patched;
        }

        /// <summary>The libraries an ELF file needs (its DT_NEEDED entries), in order.</summary>
        public static List<string> ReadNeeded(byte[] elf)
        {
            var result = new List<string>();
            foreach (var section in Sections(elf))
            {
                if (section.Type != ShtDynamic) continue;
                var strtab = SectionAt(elf, section.Link);
                for (long entry = section.Offset; entry + 16 <= section.Offset + section.Size && entry + 16 <= elf.Length; entry += 16)
                {
                    long tag = (long)U64(elf, entry);
                    if (tag == 0) break; // DT_NULL
                    if (tag == DtNeeded) result.Add(CString(elf, strtab.Offset + (long)U64(elf, entry + 8)));
                }
            }
            return result;
        }

        /// <summary>
        /// The libstdc++ the dynamic loader would pick on this machine (LD_LIBRARY_PATH first, then the
        /// standard multiarch and lib64 directories), or null when none is found.
        /// </summary>
        public static string? FindSystemLibrary(string soname)
        {
            var dirs = new List<string>();
            var ldPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            if (!string.IsNullOrEmpty(ldPath)) dirs.AddRange(ldPath.Split(':'));
            dirs.AddRange(new[]
            {
                "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
            });
            foreach (var dir in dirs)
            {
                if (dir.Length == 0) continue;
                var candidate = Path.Combine(dir, soname);
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        /// <summary>True when the library at <paramref name="libraryPath"/> defines <paramref name="version"/>.</summary>
        public static bool Defines(string libraryPath, string version) =>
            ReadDefinitions(File.ReadAllBytes(libraryPath)).Contains(version);

        private readonly struct Section
        {
            public Section(uint type, long offset, long size, uint link, uint info) { Type = type; Offset = offset; Size = size; Link = link; Info = info; }
            public uint Type { get; }
            public long Offset { get; }
            public long Size { get; }
            public uint Link { get; }
            public uint Info { get; }
        }

        private static IEnumerable<Section> Sections(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file (bad magic)");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException($"only little-endian ELF64 is supported (class {elf[4]}, data {elf[5]})");
            int count = U16(elf, 0x3C);
            for (uint i = 0; i < count; i++) yield return SectionAt(elf, i);
        }

        private static Section SectionAt(byte[] elf, uint index)
        {
            long shoff = (long)U64(elf, 0x28);
            int shentsize = U16(elf, 0x3A);
            long h = shoff + index * (long)shentsize;
            if (h + 64 > elf.Length) throw new InvalidDataException($"section header {index} lies outside the file");
            return new Section(U32(elf, h + 4), (long)U64(elf, h + 24), (long)U64(elf, h + 32), U32(elf, h + 40), U32(elf, h + 44));
        }

        private static ushort U16(byte[] b, long o) => (ushort)(b[o] | b[o + 1] << 8);
        private static uint U32(byte[] b, long o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
        private static ulong U64(byte[] b, long o) => U32(b, o) | (ulong)U32(b, o + 4) << 32;

        private static string CString(byte[] b, long o)
        {
            long end = o;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)o, (int)(end - o));
        }
    }
}

#if !LOWRANKOPTIM_NO_MSBUILD_TASK
namespace LowRankOptim.Build
{
    /// <summary>
    /// MSBuild task: weakens <c>Version</c> in each of <c>Files</c> when the machine's <c>Library</c> does not
    /// define it; leaves every file untouched otherwise.
    /// </summary>
    public sealed class WeakenElfVersionRequirement : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();
        [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";
        [Microsoft.Build.Framework.Required] public string Library { get; set; } = "";

        public override bool Execute()
        {
            if (Files.Length == 0) return true; // the targets run this on Linux only
            var system = ElfVersionNeeds.FindSystemLibrary(Library);
            if (system != null && ElfVersionNeeds.Defines(system, Version))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"{system} defines {Version}: native libraries left untouched.");
                return true;
            }
            foreach (var item in Files)
            {
                var result = ElfVersionNeeds.MarkWeak(item.ItemSpec, Version);
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"{item.ItemSpec}: {Version} {result}.");
            }
            return true;
        }
    }
}
#endif
