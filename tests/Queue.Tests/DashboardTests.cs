using System.Net.Http.Json;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

public sealed class DashboardTests(EmbeddedEngineFixture engine) : IClassFixture<EmbeddedEngineFixture>
{
    /// <summary>In headless Chromium: submit a job with the page's form and watch it reach Succeeded on the page.</summary>
    [Fact]
    public async Task AJobSubmittedOnThePageReachesSucceededThere()
    {
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(engine.Ingress.BaseAddress);
        // Ready once the page's script has run its first refresh (before that a click would submit the plain form).
        await browser.WaitForAsync("document.getElementById('refreshed')?.textContent?.startsWith('updated') || null");

        await browser.EvaluateAsync("""
            document.querySelector('[name=input]').value = 'books';
            document.querySelector('[name=mapTasks]').value = '6';
            document.querySelector('[name=reduceTasks]').value = '2';
            document.querySelector('#submit button').click();
            """);
        var id = (string)(await browser.WaitForAsync("document.querySelector('#submit-result').dataset.job || null"))!;
        Assert.Matches("^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$", id);

        var state = await browser.WaitForAsync($"(() => {{ const c = document.querySelector('tr[data-job=\"{id}\"] td.state'); return c && c.dataset.state === 'Succeeded' ? c.dataset.state : null; }})()", TimeSpan.FromSeconds(60));
        Assert.Equal("Succeeded", (string)state!);
        // The job's tasks, the queues and the workers show too.
        await browser.WaitForAsync("document.querySelectorAll('#tasks tbody tr').length >= 8 || null");
        await browser.WaitForAsync("document.querySelectorAll('#queues tbody tr').length === 2 || null");
        await browser.WaitForAsync("document.querySelectorAll('#workers tbody tr').length >= 1 || null");

        var png = await browser.ScreenshotAsync();
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        var folder = Path.Combine(RepoPaths.Root, "artifacts", "screenshots");
        Directory.CreateDirectory(folder);
        await File.WriteAllBytesAsync(Path.Combine(folder, "dashboard.png"), png);
    }

    [Fact]
    public async Task TheIngressServesAnOpenApiDocumentOfItsApi()
    {
        var document = await engine.Client.Http.GetFromJsonAsync<System.Text.Json.Nodes.JsonObject>("/openapi/v1.json");
        var paths = document!["paths"]!.AsObject();
        foreach (var path in new[] { "/jobs", "/jobs/{id}", "/jobs/{id}/output", "/jobs/{id}/timeline", "/request", "/blobs/{container}" })
        {
            Assert.True(paths.ContainsKey(path), $"{path} is missing from the OpenAPI document.");
        }
        Assert.NotNull(paths["/jobs"]!["post"]);
        Assert.NotNull(paths["/jobs/{id}"]!["delete"]);
        Assert.Contains("attempt", paths["/jobs/{id}/timeline"]!["get"]!["description"]!.GetValue<string>(), StringComparison.Ordinal);
    }
}
