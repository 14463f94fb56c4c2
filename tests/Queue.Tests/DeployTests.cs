using System.Diagnostics;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

public sealed class DeployTests
{
    /// <summary>
    /// Renders every kustomize overlay and validates the objects offline (kubernetes-models schemas,
    /// KEDA ScaledObject and TriggerAuthentication fields, per-replica target = worker slots, the
    /// Grafana dashboard's queries): scripts/validate-deploy.sh.
    /// </summary>
    [Fact]
    public async Task EveryOverlayRendersAndValidatesOffline()
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = RepoPaths.Root };
        info.ArgumentList.Add(Path.Combine(RepoPaths.Root, "scripts", "validate-deploy.sh"));
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, output);
        Assert.Contains("ok   azure:", output, StringComparison.Ordinal);
        Assert.Contains("ok   rabbitmq:", output, StringComparison.Ordinal);
        Assert.Contains("deploy: all checks passed", output, StringComparison.Ordinal);
    }
}
