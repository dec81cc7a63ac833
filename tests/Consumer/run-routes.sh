#!/usr/bin/env bash
# Builds and runs the consumer app (Program.cs here) outside the repository, as a user would, through each
# route docs/getting-started.md documents; .ci/run calls it after the test suite. One line per route,
# "consumer route <name>: passed" or "... FAILED", then "routes: N passed, N failed". Exit code 0 only when all pass.
#   package   the packages of `dotnet pack LowRankOptim.Packages.slnf` from a local feed (the build-time fix)
#   deployed  the same app published with the build-time fix off, as if built on a machine whose libstdc++ has
#             GLIBCXX_3.4.32 and copied here: only the library's run-time fix can make it load
#   project   a ProjectReference to src/LowRankOptim/LowRankOptim.csproj (the run-time fix)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
suffix="ci.$(date -u +%Y%m%d%H%M%S).$$"
version=""
cleanup() {
    rm -rf "$work"
    # The unique pre-release version keeps a re-pack from being shadowed by the NuGet cache; drop it again.
    [ -n "$version" ] && rm -rf "$packages/lowrankoptim/$version" "$packages/lowrankoptim.kernels/$version"
}
trap cleanup EXIT
passed=0 failed=0
result() { if [ "$2" -eq 0 ]; then echo "consumer route $1: passed"; passed=$((passed + 1)); else echo "consumer route $1: FAILED"; failed=$((failed + 1)); fi; }

# Does this machine's libstdc++ lack GLIBCXX_3.4.32 (then the fixes must act)?
needs_fix=0
lib=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64|libstdc\+\+\.so\.6 .*AArch64/ {print $NF; exit}')
if [ -n "$lib" ] && ! grep -aq 'GLIBCXX_3\.4\.32' "$lib"; then needs_fix=1; fi

write_project() { # $1 folder, $2 the reference item
    mkdir -p "$1"
    cp "$here/Program.cs" "$1/Program.cs"
    cat > "$1/Consumer.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
    $2
  </ItemGroup>
</Project>
XML
    cat > "$1/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML
}

run_app() { # $1 route, $2 expected native-fix outcome when the machine needs the fix, $3 the app's dll
    local out
    out=$(dotnet "$3" "$1" 2>&1); local status=$?
    echo "$out" | sed 's/^/    /'
    [ "$status" -eq 0 ] || return 1
    echo "$out" | grep -q "^consumer OK ($1)" || return 1
    if [ "$needs_fix" -eq 1 ]; then echo "$out" | grep -q "^native fix: $2 " || { echo "    expected native fix outcome $2"; return 1; }; fi
    return 0
}

log="$work/log"
mkdir -p "$work/feed"
echo "consumer: packing (version suffix $suffix)"
if dotnet pack "$repo/LowRankOptim.Packages.slnf" -c Release -o "$work/feed" -p:VersionSuffix="$suffix" >"$log" 2>&1; then
    version=$(cd "$work/feed" && ls LowRankOptim.*.nupkg | grep -v Kernels | sed -E 's/^LowRankOptim\.(.*)\.nupkg$/\1/')
    ls "$work/feed" | sed 's/^/    /'
    [ -f "$work/feed/LowRankOptim.$version.snupkg" ] && [ -f "$work/feed/LowRankOptim.Kernels.$version.nupkg" ] || { echo "    missing package or symbols"; version=""; }
    # The metadata a feed shows: licence, readme, repository (with the commit, from Source Link).
    for package in LowRankOptim LowRankOptim.Kernels; do
        [ -n "$version" ] || break
        nuspec=$(python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(z.read(next(n for n in z.namelist() if n.endswith(".nuspec"))).decode())' "$work/feed/$package.$version.nupkg")
        for tag in '<license type="expression">MIT</license>' '<readme>README.md</readme>' '<repository type="git"'; do
            echo "$nuspec" | grep -qF "$tag" || { echo "    $package.$version.nupkg: the nuspec lacks $tag"; version=""; }
        done
    done
else
    cat "$log"; version=""
fi

if [ -n "$version" ]; then
    app="$work/package"
    write_project "$app" "<PackageReference Include=\"LowRankOptim\" Version=\"$version\" />"
    if (cd "$app" && dotnet build -c Release >"$log" 2>&1); then run_app package AlreadyWeak "$app/bin/Release/net10.0/Consumer.dll"; result package $?
    else cat "$log"; result package 1; fi

    if (cd "$app" && dotnet publish -c Release -o "$work/deployed" -p:LowRankOptimSkipGlibcxxFix=true >"$log" 2>&1); then run_app deployed Applied "$work/deployed/Consumer.dll"; result deployed $?
    else cat "$log"; result deployed 1; fi
    rm -rf "$work/deployed"
else
    result package 1; result deployed 1
fi

app="$work/project"
write_project "$app" "<ProjectReference Include=\"$repo/src/LowRankOptim/LowRankOptim.csproj\" />"
if (cd "$app" && dotnet build -c Release >"$log" 2>&1); then run_app project Applied "$app/bin/Release/net10.0/Consumer.dll"; result project $?
else cat "$log"; result project 1; fi

echo "routes: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
