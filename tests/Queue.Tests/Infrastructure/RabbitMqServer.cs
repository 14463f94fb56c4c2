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

    private RabbitMqServer(TestCertificates? tls)
    {
        Port = ServiceProcess.FreePort();
        var epmdPort = ServiceProcess.FreePort();
        Directory.CreateDirectory(Path.Combine(folder, "home"));
        var config = Path.Combine(folder, "rabbitmq.conf");
        var text = $"loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:{Port}\n";
        if (tls is not null)
        {
            TlsPort = ServiceProcess.FreePort();
            text += $"listeners.ssl.default = 127.0.0.1:{TlsPort}\nssl_options.cacertfile = {tls.CaFile}\nssl_options.certfile = {tls.ServerCertificateFile}\n"
                + $"ssl_options.keyfile = {tls.ServerKeyFile}\nssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n";
        }
        File.WriteAllText(config, text);
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

    /// <summary>The TLS listener's port, when started with certificates.</summary>
    public int? TlsPort { get; }

    /// <summary>An <c>amqps://</c> URI for a user on the TLS listener.</summary>
    public string TlsConnectionString(string user, string password) => $"amqps://{user}:{password}@127.0.0.1:{TlsPort}/";

    public static async Task<RabbitMqServer> StartAsync(TestCertificates? tls = null)
    {
        var rabbit = new RabbitMqServer(tls);
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

    /// <summary>Adds a user who may declare, publish to and consume only the engine's queues (<c>queue.*</c>).</summary>
    public async Task AddUserAsync(string user, string password)
    {
        const string engine = "^(queue\\..*|amq\\.default)$";
        foreach (var arguments in new[] { $"add_user {user} {password}", $"set_permissions -p / {user} '{engine}' '{engine}' '{engine}'" })
        {
            var (exit, output) = await OsProcess.BashAsync($"/usr/lib/rabbitmq/bin/rabbitmqctl {arguments}", folder, TimeSpan.FromSeconds(60), environment);
            Assert.True(exit == 0, $"rabbitmqctl {arguments}: {output}");
        }
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
