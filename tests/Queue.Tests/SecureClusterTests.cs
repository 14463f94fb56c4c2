using Queue.Contracts.Jobs;
using Queue.Tests.Infrastructure;
using Queue.Worker.Apps;

namespace Queue.Tests;

/// <summary>
/// The cluster with its control plane locked: etcd reached only over TLS with a client certificate and
/// with its authentication on (a user whose role covers <c>/queue/</c> only); RabbitMQ over TLS, each
/// kind of service with a broker user of its own. Certificates are made by the test with openssl.
/// </summary>
public sealed class SecureClusterFixture : ProcessClusterFixture
{
    public const string EtcdUser = "queue";
    public static readonly string EtcdPassword = "etcd-" + Guid.NewGuid().ToString("N");
    private static readonly Dictionary<string, string> BrokerUsers = new()
    {
        ["Queue.Coordinator"] = "coordinator",
        ["Queue.Worker"] = "worker",
        ["Queue.Ingress"] = "ingress",
    };
    private static readonly string BrokerPassword = "amqp-" + Guid.NewGuid().ToString("N");

    public TestCertificates Certificates { get; private set; } = null!;

    public RabbitMqServer Rabbit { get; private set; } = null!;

    protected override int EtcdMembers => 1;

    protected override async Task<EtcdServer> StartEtcdAsync()
    {
        Certificates = await TestCertificates.CreateAsync();
        var etcd = await EtcdServer.StartAsync(memberCount: EtcdMembers, tls: Certificates);
        await etcd.EnableAuthAsync(EtcdUser, EtcdPassword);
        return etcd;
    }

    protected override Dictionary<string, string> EtcdEnvironment() => new()
    {
        ["Queue__Etcd__Endpoints"] = Etcd.Endpoints,
        ["Queue__Etcd__CaFile"] = Certificates.CaFile,
        ["Queue__Etcd__ClientCertificateFile"] = Certificates.ClientCertificateFile,
        ["Queue__Etcd__ClientKeyFile"] = Certificates.ClientKeyFile,
        ["Queue__Etcd__Username"] = EtcdUser,
        ["Queue__Etcd__Password"] = EtcdPassword,
    };

    protected override async Task StartStorageAsync()
    {
        RepoPaths.CopyBooksTo(Path.Combine(Folder, "data", "books"));
        Rabbit = await RabbitMqServer.StartAsync(Certificates);
        foreach (var user in BrokerUsers.Values)
        {
            await Rabbit.AddUserAsync(user, BrokerPassword);
        }
    }

    protected override ValueTask StopStorageAsync() => Rabbit?.DisposeAsync() ?? ValueTask.CompletedTask;

    protected override Dictionary<string, string> AdapterEnvironment() => new()
    {
        ["Queue__Adapters__WorkQueue"] = "rabbitmq",
        ["Queue__Adapters__DataPath"] = Path.Combine(Folder, "data"),
        ["Queue__RabbitMq__CaFile"] = Certificates.CaFile,
        ["Queue__RabbitMq__Prefetch"] = "2",
    };

    protected override void ForService(string project, Dictionary<string, string> environment) =>
        environment["Queue__RabbitMq__ConnectionString"] = Rabbit.TlsConnectionString(BrokerUsers[project], BrokerPassword);

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Certificates?.Dispose();
    }
}

public sealed class SecureClusterTests(SecureClusterFixture cluster) : IClassFixture<SecureClusterFixture>
{
    [Fact]
    public async Task JobsRunExactlyWithEtcdBehindTlsAndAuthAndTheBrokerBehindTls()
    {
        var id = await cluster.Client.SubmitAsync(new { app = "wordcount", input = "books", mapTasks = 6, reduceTasks = 3 });
        var view = await cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(2));
        Assert.True(view.Status.State == JobState.Succeeded, view.Status.Error);
        Assert.Equal(SequentialReference.Run(new WordCountApp(), SequentialReference.ReadFolder(RepoPaths.Gutenberg)), await cluster.Client.OutputAsync(id));
        // Nobody gets in without the client certificate, or with it but without the user's password.
        var (exit, output) = await OsProcess.BashAsync(
            $"ETCDCTL_API=3 etcdctl --endpoints {cluster.Etcd.Endpoints} --cacert {cluster.Certificates.CaFile} --cert {cluster.Certificates.ClientCertificateFile} --key {cluster.Certificates.ClientKeyFile} get --prefix /queue/jobs/",
            Path.GetTempPath(), TimeSpan.FromSeconds(30));
        Assert.True(exit != 0, $"etcd answered a client without a user: {output}");
        (exit, output) = await OsProcess.BashAsync($"ETCDCTL_API=3 etcdctl --endpoints {cluster.Etcd.Endpoints} --cacert {cluster.Certificates.CaFile} --user {SecureClusterFixture.EtcdUser}:{SecureClusterFixture.EtcdPassword} get --prefix /queue/jobs/",
            Path.GetTempPath(), TimeSpan.FromSeconds(30));
        Assert.True(exit != 0, $"etcd answered a client without a certificate: {output}");
        // No secret in any service's output.
        foreach (var service in cluster.Coordinators.Concat(cluster.Workers).Append(cluster.Ingress))
        {
            Assert.DoesNotContain(SecureClusterFixture.EtcdPassword, service.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ACoordinatorWithAWrongPasswordStopsAtStartSayingSo()
    {
        var output = await RunUntilExitAsync(new() { ["Queue__Etcd__Password"] = "not-the-password" });
        Assert.Contains("refused the user name or password", output, StringComparison.Ordinal);
        Assert.DoesNotContain("not-the-password", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACoordinatorThatDoesNotTrustTheMembersCertificateStopsAtStartSayingSo()
    {
        using var other = await TestCertificates.CreateAsync();
        var output = await RunUntilExitAsync(new() { ["Queue__Etcd__CaFile"] = other.CaFile });
        Assert.Contains("The TLS connection to etcd", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACoordinatorWithoutCredentialsWhereAuthIsOnStopsAtStartSayingSo()
    {
        var output = await RunUntilExitAsync(new() { ["Queue__Etcd__Username"] = "", ["Queue__Etcd__Password"] = "" });
        Assert.Contains("Cannot use etcd", output, StringComparison.Ordinal);
    }

    /// <summary>Starts a coordinator with some settings changed and returns its output once it has exited (it must, with code 78).</summary>
    private async Task<string> RunUntilExitAsync(Dictionary<string, string> changes)
    {
        ServiceProcess coordinator;
        try
        {
            coordinator = await cluster.StartAsync("Queue.Coordinator", changes);
        }
        catch (InvalidOperationException e) when (e.Message.Contains("exited with 78", StringComparison.Ordinal))
        {
            return e.Message; // it stopped before it ever answered /healthz
        }
        await using (coordinator)
        {
            Assert.True(await coordinator.WaitForExitAsync(TimeSpan.FromSeconds(30)), "The coordinator kept running:\n" + coordinator.Output);
            Assert.Equal(78, coordinator.ExitCode);
            return coordinator.Output;
        }
    }
}
