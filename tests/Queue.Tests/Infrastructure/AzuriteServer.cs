using System.Diagnostics;
using System.Net.Sockets;

namespace Queue.Tests.Infrastructure;

/// <summary>Azurite's Blob and Queue emulators (npm, installed by scripts/install-servers.sh) on 127.0.0.1, in memory.</summary>
public sealed class AzuriteServer : IAsyncDisposable
{
    /// <summary>Azurite's well-known development account key (public, documented by Microsoft).</summary>
    public const string DevKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private readonly List<Process> processes = [];
    private readonly BoundedLog output = new(100_000);

    public int BlobPort { get; } = ServiceProcess.FreePort();

    public int QueuePort { get; } = ServiceProcess.FreePort();

    public string ConnectionString(string key = DevKey) =>
        $"AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{BlobPort}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{QueuePort}/devstoreaccount1;";

    public static async Task<AzuriteServer> StartAsync()
    {
        var bin = Path.Combine(RepoPaths.Root, ".tools", "azurite", "node_modules", ".bin");
        if (!File.Exists(Path.Combine(bin, "azurite-blob")))
        {
            throw new InvalidOperationException("Azurite is not installed: run scripts/install-servers.sh.");
        }
        var server = new AzuriteServer();
        server.Start(Path.Combine(bin, "azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", server.BlobPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        server.Start(Path.Combine(bin, "azurite-queue"), "--queueHost", "127.0.0.1", "--queuePort", server.QueuePort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var port in new[] { server.BlobPort, server.QueuePort })
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (true)
            {
                try
                {
                    using var tcp = new TcpClient();
                    await tcp.ConnectAsync("127.0.0.1", port);
                    break;
                }
                catch (SocketException)
                {
                    if (DateTime.UtcNow > deadline)
                    {
                        throw new TimeoutException($"Azurite did not listen on {port}:\n{server.output}");
                    }
                    await Task.Delay(100);
                }
            }
        }
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in processes)
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            process.Dispose();
        }
    }

    private void Start(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args.Concat(["--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--loose"]))
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => output.Append(e.Data);
        process.ErrorDataReceived += (_, e) => output.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        processes.Add(process);
    }
}
