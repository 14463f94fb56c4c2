using System.Diagnostics;

namespace Queue.Tests.Infrastructure;

/// <summary>
/// A real RabbitMQ (Debian's rabbitmq-server) on 127.0.0.1 with its own epmd, node name, ports and
/// folders; disposing stops exactly the processes it started.
/// </summary>
public sealed class RabbitMqServer : IAsyncDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-rabbit", Guid.NewGuid().ToString("N"));
    private readonly BoundedLog output = new(200_000);
    private readonly Dictionary<string, string> environment;
    private Process? epmd;
    private Process? server;

    private RabbitMqServer()
    {
        Port = ServiceProcess.FreePort();
        var epmdPort = ServiceProcess.FreePort();
        Directory.CreateDirectory(Path.Combine(folder, "home"));
        var config = Path.Combine(folder, "rabbitmq.conf");
        File.WriteAllText(config, $"loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:{Port}\n");
        environment = new Dictionary<string, string>
        {
            ["HOME"] = Path.Combine(folder, "home"),
            ["RABBITMQ_NODENAME"] = $"rabbit-{Port}@localhost",
            ["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1",
            ["RABBITMQ_NODE_PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_DIST_PORT"] = ServiceProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_MNESIA_BASE"] = Path.Combine(folder, "mnesia"),
            ["RABBITMQ_LOG_BASE"] = Path.Combine(folder, "log"),
            ["RABBITMQ_CONFIG_FILE"] = Path.Combine(folder, "rabbitmq"),
            ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(folder, "enabled_plugins"),
            ["ERL_EPMD_ADDRESS"] = "127.0.0.1",
            ["ERL_EPMD_PORT"] = epmdPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        File.WriteAllText(Path.Combine(folder, "enabled_plugins"), "[].\n");
    }

    public int Port { get; }

    public string ConnectionString => $"amqp://guest:guest@127.0.0.1:{Port}/";

    public static async Task<RabbitMqServer> StartAsync()
    {
        var rabbit = new RabbitMqServer();
        rabbit.epmd = rabbit.Launch("epmd", ["-port", rabbit.environment["ERL_EPMD_PORT"], "-address", "127.0.0.1"]);
        await rabbit.StartServerAsync();
        return rabbit;
    }

    /// <summary>Stops the broker hard (SIGKILL) and starts it again on the same port and data.</summary>
    public async Task RestartAsync()
    {
        server!.Kill(entireProcessTree: true);
        await server.WaitForExitAsync();
        await StartServerAsync();
    }

    /// <summary>Signals the broker's whole process tree (the start script and the Erlang VM below it): STOP freezes it, CONT thaws it.</summary>
    public void Signal(string name) => OsProcess.SignalTree(server!.Id, name);

    public async ValueTask DisposeAsync()
    {
        foreach (var process in new[] { server, epmd })
        {
            if (process is { HasExited: false })
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            process?.Dispose();
        }
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task StartServerAsync()
    {
        server = Launch("/usr/lib/rabbitmq/bin/rabbitmq-server", []);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        var factory = new RabbitMQ.Client.ConnectionFactory { Uri = new Uri(ConnectionString) };
        while (true)
        {
            try
            {
                await using var connection = await factory.CreateConnectionAsync();
                return;
            }
            catch (Exception e) when (e is RabbitMQ.Client.Exceptions.BrokerUnreachableException or IOException)
            {
                if (DateTime.UtcNow > deadline || server.HasExited)
                {
                    throw new TimeoutException($"RabbitMQ did not start: {e.Message}\n{output}");
                }
                await Task.Delay(250);
            }
        }
    }

    private Process Launch(string file, string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => output.Append(e.Data);
        process.ErrorDataReceived += (_, e) => output.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }
}
