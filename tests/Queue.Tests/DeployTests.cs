using System.Diagnostics;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

// With the other tests that run the SDK on the repository (dotnet run, cluster.sh): concurrent restores of one project collide.
[Collection("readme")]
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
        Assert.Contains("ok   servicebus:", output, StringComparison.Ordinal);
        Assert.Contains("ok   servicebus trigger", output, StringComparison.Ordinal);
        Assert.Contains("deploy: all checks passed", output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Each image's publish command, as its Dockerfile has it (for amd64), runs offline and yields
    /// ReadyToRun code: the service's assembly carries precompiled native code beside its IL.
    /// </summary>
    [Theory]
    [InlineData("worker", "Queue.Worker")]
    [InlineData("coordinator", "Queue.Coordinator")]
    [InlineData("ingress", "Queue.Ingress")]
    public async Task EachImagePublishesReadyToRunCode(string image, string assembly)
    {
        var dockerfile = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "deploy", "docker", $"Dockerfile.{image}"));
        var command = dockerfile.Replace("\\\n", " ", StringComparison.Ordinal).Split('\n')
            .Single(l => l.StartsWith("RUN --mount=", StringComparison.Ordinal) && l.Contains("dotnet publish", StringComparison.Ordinal));
        command = command[command.IndexOf("dotnet publish", StringComparison.Ordinal)..];
        var output = Path.Combine(Path.GetTempPath(), "queue-tests", Guid.NewGuid().ToString("N"));
        Assert.Contains(" -o /app ", command, StringComparison.Ordinal);
        try
        {
            var result = await OsProcess.BashAsync($"TARGETARCH=amd64; {command.Replace(" -o /app ", $" -o '{output}' ", StringComparison.Ordinal)} -nologo -v quiet", RepoPaths.Root, TimeSpan.FromMinutes(5));
            Assert.True(result.Exit == 0, result.Output);
            using var pe = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(Path.Combine(output, assembly + ".dll")));
            Assert.True(pe.PEHeaders.CorHeader!.ManagedNativeHeaderDirectory.Size > 0, $"{assembly}.dll has no ReadyToRun code.");
        }
        finally
        {
            if (Directory.Exists(output))
            {
                Directory.Delete(output, recursive: true);
            }
        }
    }
}
